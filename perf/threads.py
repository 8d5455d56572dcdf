"""Threads sharing one ``flin.Client`` vs each with its own: ops/s, same run.

    python -m flin_perf.threads [--threads 16] [--seconds 3] [--rounds 3]
                                [--shards 8] [--endpoint URL]

Each thread calls in a closed loop (half SET, half GET of 100-byte values on
its own 1,000 keys) for ``--seconds``; the two setups alternate ``--rounds``
times (in turn first) against one cluster (started here in /tmp unless ``--endpoint``), and
the median ratio shared/own is printed. A shared Client gives each thread a
socket of its own (``flin/client/transport.py``), so the two should differ
only by a ``threading.local`` read per call.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import flin

from .cluster_proc import ClusterProcess


def _load(clients: list[flin.Client], seconds: float) -> float:
    """ops/s of ``len(clients)`` threads, thread i calling through clients[i]."""
    counts = [0] * len(clients)
    go = threading.Barrier(len(clients) + 1)
    value = b"v" * 100

    def worker(i: int) -> None:
        db = clients[i]
        keys = [b"thrbench:%d:%d" % (i, j) for j in range(1000)]
        db.ping()                                   # connected before the clock starts
        go.wait()
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            k = keys[n % 1000]
            if n & 1:
                db.get(k)
            else:
                db.set(k, value)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for t in ts:
        t.start()
    go.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def run(endpoint: str, threads: int, seconds: float, rounds: int) -> float:
    shared: list[float] = []
    own: list[float] = []
    with flin.Client(endpoint) as db:
        _load([db] * threads, seconds / 3)          # warm up: the keys exist before round 1
    for r in range(rounds):
        for which in (("shared", "own") if r % 2 == 0 else ("own", "shared")):  # alternate order
            if which == "shared":
                with flin.Client(endpoint) as db:
                    shared.append(_load([db] * threads, seconds))
                continue
            mine = [flin.Client(endpoint) for _ in range(threads)]
            try:
                own.append(_load(mine, seconds))
            finally:
                for c in mine:
                    c.close()
        print("round %d: shared %8.0f ops/s   own %8.0f ops/s   ratio %.3f"
              % (r + 1, shared[-1], own[-1], shared[-1] / own[-1]), flush=True)
    ratio = statistics.median(shared) / statistics.median(own)
    print("median: shared %.0f ops/s, own %.0f ops/s, shared/own %.3f"
          % (statistics.median(shared), statistics.median(own), ratio))
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--endpoint")
    a = ap.parse_args()
    if a.endpoint:
        run(a.endpoint, a.threads, a.seconds, a.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="flin-thr-", dir="/tmp") as d:
        c = ClusterProcess(d, a.shards).start()
        try:
            run(c.endpoint, a.threads, a.seconds, a.rounds)
        finally:
            c.stop()


if __name__ == "__main__":
    main()
