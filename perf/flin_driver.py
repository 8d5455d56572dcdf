"""The load against a Flin router: one ``Client`` (one DEALER socket) per
load process, ``workers x pipeline`` requests kept in flight over it.

Closed loop: each reply's latency (submit to receive) is recorded and the
slot it frees is refilled at once with that worker's next request, until the
deadline; then the requests still in flight are awaited and counted. The
replies that arrived together are answered together: their workers' next
requests go out in one frame (``Client.submit_many``), as a Flin client
coalescing concurrent calls would; each request is still its own, with its
own reply and latency.

A request is one frame: ``[SET]`` or ``[MSET of batch keys]``, ``[GET]`` or
``[MGET]``, one ``[SCAN]`` page, or ``batch`` ``[INCR]`` commands. Ops are
keys acknowledged; an ``ErrorReply`` counts its keys as errors.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

from flin import errors
from flin.client import Client
from flin.protocol import GET, INCR, MGET, MSET, SCAN, SET, ErrorReply

from .phase import PhaseSpec, Recorder
from .workload import INCR as K_INCR, KEY_PREFIX, READ, SCAN as K_SCAN, WRITE, Plan
from .workload import counter, key


def build(kind: str, idx: list[int], value: bytes, scan_limit: int) -> list:
    """The wire commands of one request."""
    if kind == WRITE:
        if len(idx) == 1:
            return [[SET, key(idx[0]), value, None, 0]]
        flat: list[bytes] = []
        for i in idx:
            flat.append(key(i))
            flat.append(value)
        return [[MSET, flat, None]]
    if kind == READ:
        if len(idx) == 1:
            return [[GET, key(idx[0])]]
        return [[MGET, [key(i) for i in idx]]]
    if kind == K_SCAN:
        return [[SCAN, KEY_PREFIX, key(idx[0]), scan_limit, True]]
    if kind == K_INCR:
        return [[INCR, counter(i), 1, os.urandom(12)] for i in idx]
    raise ValueError("unknown request kind %r" % kind)


def account(kind: str, n: int, results: Any) -> tuple[int, int, int, Any]:
    """``(ok keys, failed keys, missing keys, an error or None)`` of one reply."""
    if type(results) is ErrorReply:
        return 0, n, 0, results
    if kind == K_INCR:
        bad = [r for r in results if type(r) is ErrorReply]
        return n - len(bad), len(bad), 0, bad[0] if bad else None
    r = results[0]
    if type(r) is ErrorReply:
        return 0, n, 0, r
    if kind == READ:
        if n == 1:
            return 1, 0, int(r is None), None
        return n, 0, sum(1 for v in r if v is None), None
    if kind == K_SCAN:
        return len(r[0]), 0, 0, None
    return n, 0, 0, None


def drive(spec: PhaseSpec, proc: int, plan: Plan, rec: Recorder,
          go: Callable[[], int]) -> None:
    client = Client(spec.address, timeout=spec.timeout, retries=0)
    value = os.urandom(spec.value_size)
    slots = spec.workers_of(proc) * spec.pipeline
    limit = spec.scan_limit
    inflight: dict[int, tuple[int, str, int]] = {}
    submit_many, receive_all, clock, nxt = (client.submit_many, client.receive_all,
                                            time.perf_counter_ns, plan.next)
    try:
        client.ping()                                   # connected before the clock starts
        deadline = go()

        def issue(count: int) -> None:
            """The next request of ``count`` workers, in one frame."""
            reqs = [nxt() for _ in range(count)]
            t = clock()
            rids = submit_many([build(kind, idx, value, limit) for kind, idx in reqs])
            for rid, (kind, idx) in zip(rids, reqs):
                inflight[rid] = (t, kind, len(idx))

        issue(slots)
        while inflight:
            try:
                replies = receive_all()
            except errors.Timeout as exc:
                for t, kind, n in inflight.values():    # count what never came back
                    rec.done(clock() - t, 0, n, 0, exc)
                return
            t1 = clock()
            freed = 0
            for rid, results in replies:
                entry = inflight.pop(rid, None)
                if entry is None:
                    continue
                t0, kind, n = entry
                ok, failed, missing, why = account(kind, n, results)
                rec.done(t1 - t0, ok, failed, missing, why)
                freed += 1
            if freed and t1 < deadline:
                issue(freed)                            # every freed slot, one frame
    finally:
        client.close()
