"""Baseline ``engine``: the same workload straight on plyvel, in one process,
with no network and no router: what one core gets out of the storage engine,
the ceiling of any single Flin shard.

Same key names, value size, key space and batch as the Flin run: a write
request is one ``put`` (batch 1) or one ``write_batch`` of ``batch`` puts; a
read request is ``batch`` ``get`` calls; a scan request is an iterator page;
an incr request reads, adds one and writes ``batch`` counters in one batch.
Workers and pipelining do not apply (one thread, one request at a time);
latency is timed per request as for Flin.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import plyvel

from .phase import PhaseSpec, Recorder
from .workload import INCR, KEY_PREFIX, READ, SCAN, WRITE, Plan, counter, key

# LevelDB options alike to a Flin shard's (flin/store.py), with the library's
# default memtable and cache sizes since this one database holds every key.
DB_OPTIONS = {"create_if_missing": True, "bloom_filter_bits": 10}


def drive(spec: PhaseSpec, proc: int, plan: Plan, rec: Recorder,
          go: Callable[[], int]) -> None:
    os.makedirs(spec.address, exist_ok=True)
    db = plyvel.DB(spec.address, **DB_OPTIONS)
    value = os.urandom(spec.value_size)
    get, put, clock, nxt = db.get, db.put, time.perf_counter_ns, plan.next
    limit = spec.scan_limit
    try:
        deadline = go()
        t1 = clock()
        while t1 < deadline:
            kind, idx = nxt()
            n = len(idx)
            missing = 0
            if n == 1 and kind == WRITE:
                k = key(idx[0])
                t0 = clock()
                put(k, value)
            elif n == 1 and kind == READ:
                k = key(idx[0])
                t0 = clock()
                if get(k) is None:
                    missing = 1
            elif kind == WRITE:
                keys = [key(i) for i in idx]
                t0 = clock()
                with db.write_batch() as wb:
                    for k in keys:
                        wb.put(k, value)
            elif kind == READ:
                keys = [key(i) for i in idx]
                t0 = clock()
                for k in keys:
                    if get(k) is None:
                        missing += 1
            elif kind == SCAN:
                start = key(idx[0]) + b"\x00"           # strictly after, as Flin's start_after
                t0 = clock()
                n = 0
                with db.iterator(start=start) as it:
                    for k, v in it:
                        if n == limit or not k.startswith(KEY_PREFIX):
                            break
                        n += 1
            elif kind == INCR:
                keys = [counter(i) for i in idx]
                t0 = clock()
                with db.write_batch() as wb:
                    pend: dict[bytes, int] = {}
                    for k in keys:
                        cur = pend.get(k)
                        if cur is None:
                            raw = get(k)
                            cur = int(raw) if raw is not None else 0
                        pend[k] = cur + 1
                    for k, v in pend.items():
                        wb.put(k, b"%d" % v)
            else:
                raise ValueError("unknown request kind %r" % kind)
            t1 = clock()
            rec.done(t1 - t0, n, 0, missing)
    finally:
        db.close()
