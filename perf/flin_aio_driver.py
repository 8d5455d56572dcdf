"""The load against a Flin router through ``flin.asyncio.Client`` (``flin
bench --client asyncio``): one client per load process, and
``workers x pipeline`` coroutines on it, each awaiting its calls back to back
as an asyncio service's handlers would (``await db.set(k, v)``), on asyncio's own loop or (``--client uvloop``) on
uvloop's. The client
multiplexes them over one socket and coalesces what one loop turn issues into
one frame; the sync driver (``flin_driver``) does that by hand.

Each call's latency is recorded (from the call to its result); after the
deadline no coroutine starts another call. Ops are keys acknowledged, as in
the sync driver; an error counts the call's keys as errors.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Callable

from flin import errors
from flin.asyncio import Client

from .phase import PhaseSpec, Recorder
from .workload import INCR as K_INCR, KEY_PREFIX, READ, SCAN as K_SCAN, WRITE, Plan
from .workload import counter, key


async def _call(db: Client, kind: str, idx: list[int], value: bytes,
                scan_limit: int) -> tuple[int, int]:
    """One call; ``(ok keys, missing keys)``."""
    if kind == WRITE:
        if len(idx) == 1:
            await db.set(key(idx[0]), value)
        else:
            await db.mset([(key(i), value) for i in idx])
        return len(idx), 0
    if kind == READ:
        if len(idx) == 1:
            return 1, int(await db.get(key(idx[0])) is None)
        got = await db.mget([key(i) for i in idx])
        return len(idx), sum(1 for v in got if v is None)
    if kind == K_SCAN:
        items, _ = await db.scan(KEY_PREFIX, start_after=key(idx[0]), limit=scan_limit,
                                 values=True)
        return len(items), 0
    if kind == K_INCR:
        await asyncio.gather(*(db.incr(counter(i)) for i in idx))
        return len(idx), 0
    raise ValueError("unknown request kind %r" % kind)


def drive(spec: PhaseSpec, proc: int, plan: Plan, rec: Recorder,
          go: Callable[[], int]) -> None:
    if spec.client == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(_drive(spec, proc, plan, rec, go))


async def _drive(spec: PhaseSpec, proc: int, plan: Plan, rec: Recorder,
                 go: Callable[[], int]) -> None:
    value = os.urandom(spec.value_size)
    clock, nxt, limit = time.perf_counter_ns, plan.next, spec.scan_limit
    async with Client(spec.address, timeout=spec.timeout, retries=0) as db:
        await db.ping()                                 # connected before the clock starts
        deadline = go()

        async def worker() -> None:
            while clock() < deadline:
                kind, idx = nxt()
                t0 = clock()
                try:
                    ok, missing = await _call(db, kind, idx, value, limit)
                except errors.FlinError as exc:
                    rec.done(clock() - t0, 0, len(idx), 0, exc)
                    if isinstance(exc, errors.Timeout):
                        return
                    continue
                rec.done(clock() - t0, ok, 0, missing, None)

        await asyncio.gather(*(worker() for _ in range(spec.workers_of(proc) * spec.pipeline)))
