"""The asyncio client under load, beside the sync bench driver at the same
in-flight count: the first measurement of issue 15's ratio
(``results/2026-12-01-clients``). ``flin bench --client asyncio`` now does this
inside the harness, with latencies; this script stays to reproduce that result.

    python -m flin_perf.aio_set ENDPOINT SECONDS [COROUTINES] [--uvloop] [--get]

runs COROUTINES (default 64) coroutines on ONE ``flin.asyncio.Client``, each
doing SETs of 1 KiB values back to back (``--get``: GETs of 1,000 keys it
sets first), and prints ops/s and the client's CPU per op. Compare with
``flin bench --endpoint ENDPOINT --processes 1 --workers 64 --workload write``
(one process, 64 requests in flight), alternated against one cluster.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

import flin.asyncio as fa


async def run(endpoint: str, seconds: float, n: int = 64, get: bool = False) -> float:
    """ops/s of ``n`` coroutines SETting (``get``: GETting) for ``seconds`` over one client."""
    async with fa.Client(endpoint, timeout=10) as db:
        if get:
            for i in range(0, 1000, 100):
                await asyncio.gather(*(db.set(b"aio:get:%d" % j, b"x" * 1024)
                                       for j in range(i, i + 100)))
        done = 0
        stop = time.monotonic() + seconds

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                if get:
                    await db.get(b"aio:get:%d" % ((w + 7 * i) % 1000))
                else:
                    await db.set(b"aio:%d:%d" % (w, i % 1000), b"x" * 1024)
                done += 1
                i += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(n)))
        return done / (time.monotonic() - t0)


def main() -> None:
    args = [a for a in sys.argv[1:] if a not in ("--uvloop", "--get")]
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    n = int(args[2]) if len(args) > 2 else 64
    t0, wall0 = os.times(), time.monotonic()
    get = "--get" in sys.argv
    ops = asyncio.run(run(args[0], float(args[1]), n, get))
    t1, wall = os.times(), time.monotonic() - wall0
    cpu = (t1.user + t1.system) - (t0.user + t0.system)
    print("asyncio, %d coroutines, %s 1 KiB: %.0f ops/s, client CPU %.1f us/op"
          % (n, "GET" if get else "SET", ops, 1e6 * cpu / (ops * wall)))


if __name__ == "__main__":
    main()
