"""Replicas on one machine, measured (issue 18's table). Run from a checkout:

    python -m flin_perf.replicas_bench [--shards 6] [--rounds 2] [--duration 3]
        [--failovers 5] [--json F]

1. Writes: three nodes on 127.0.0.2-4 holding one copy of each shard (R=1)
   and three holding three (R=3, ``--acks majority``), alternated round by
   round, each measured by ``flin bench --endpoint --workload write --batch
   100`` (64 workers; the clients learn all three routers).
2. Reads, R=3: primary reads against replica reads (``read_from="replica"``),
   batch 1, alternated round by round, by this module's own driver
   (PROCS processes x THREADS threads, each a ``flin.Client`` doing GETs of
   preloaded keys through the three nodes' routers).
3. Failover: the node holding a shard's primary is SIGKILLed; seconds until
   a write to that shard is acknowledged through another node; the node is
   restarted and caught up; FAILOVERS times, rotating nodes; the median.

It starts the same real processes the tests do (``tests.support.hosts``).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import flin  # noqa: E402
from tests.support.faults import wait_for  # noqa: E402
from tests.support.hosts import Hosts  # noqa: E402
from tests.support.storm import key_on, wait_written  # noqa: E402

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
PROCS, THREADS, KEYS = 4, 4, 2000


def three(folder: str, shards: int, replicas: int) -> Hosts:
    hosts = Hosts(folder)
    args = ("--replicas", str(replicas)) if replicas > 1 else ()
    hosts.create(shards, ["n1", "n2", "n3"], args)
    for i, h in enumerate(HOSTS):
        hosts.node("n%d" % (i + 1), h).start()
    if replicas > 1:
        wait_for(lambda: in_step(hosts), 60, "every copy in step")
    return hosts


def in_step(hosts: Hosts) -> bool:
    st = hosts.status()
    return all(r["primary"] and all(p and p.get("voter") and p.get("lag") == 0
                                    for p in r["copies"].values())
               for r in st["replica_shards"])


def writes(folder: str, shards: int, rounds: int, duration: float) -> dict:
    rows: dict[str, list] = {"R=1": [], "R=3 majority": []}
    for r in range(rounds):
        for name, replicas in (("R=1", 1), ("R=3 majority", 3)):
            hosts = three(tempfile.mkdtemp(dir=folder), shards, replicas)
            try:
                ep = hosts.nodes["n1"].endpoint
                got = bench_writes(ep, duration, os.path.join(folder, "w%d.json" % r))
                rows[name].append(got)
                print("round %d %-13s write batch 100: %d ops/s" % (r, name, got), flush=True)
            finally:
                hosts.close()
    return _summary(rows, "R=3 majority", "R=1", "ratio_r3_to_r1")


def _summary(rows: dict[str, list], top: str, bottom: str, name: str) -> dict:
    """Each mode's best round, and the ratio of two of them."""
    best = {k: max(v) for k, v in rows.items()}
    return {"rounds": rows, "best": best, name: round(best[top] / best[bottom], 2)}


def bench_writes(endpoint: str, duration: float, out: str) -> int:
    import subprocess
    got = subprocess.run([sys.executable, "-m", "flin", "bench", "--endpoint", endpoint,
                          "--batch", "100", "--duration", str(duration), "--workload", "write",
                          "--no-progress", "--json", out], capture_output=True, text=True,
                         cwd=ROOT)
    if got.returncode != 0:
        raise RuntimeError(got.stderr[-2000:])
    with open(out) as f:
        rep = json.load(f)
    return round(next(r["ops_per_sec"] for r in rep["results"] if r["target"] == "flin"))


def _reader(endpoints: list[str], read_from: str, duration: float, start: float,
            q: mp.Queue) -> None:
    counts = [0] * THREADS

    def run(t: int) -> None:
        c = flin.Client(endpoints[t % len(endpoints)], read_from=read_from, timeout=10)
        keys = [b"k%d" % i for i in range(KEYS)]
        i = t * 7919
        while time.monotonic() < start:
            time.sleep(0.001)
        end = start + duration
        n = 0
        while time.monotonic() < end:
            c.get(keys[i % KEYS])
            i += 1
            n += 1
        counts[t] = n
        c.close()
    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put(sum(counts))


def read_rate(endpoints: list[str], read_from: str, duration: float) -> float:
    q: mp.Queue = mp.Queue()
    start = time.monotonic() + 1.0
    procs = [mp.Process(target=_reader, args=(endpoints, read_from, duration, start, q))
             for _ in range(PROCS)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return total / duration


def reads(folder: str, shards: int, rounds: int, duration: float) -> dict:
    hosts = three(tempfile.mkdtemp(dir=folder), shards, 3)
    try:
        eps = [n.endpoint for n in hosts.nodes.values()]
        with flin.Client(eps[0]) as c:
            for i in range(0, KEYS, 100):
                c.mset({b"k%d" % j: b"v" * 100 for j in range(i, i + 100)})
        wait_for(lambda: in_step(hosts), 60, "every copy in step")
        rows: dict[str, list] = {"primary": [], "replica": []}
        for r in range(rounds):
            for mode in ("primary", "replica"):
                got = read_rate(eps, mode, duration)
                rows[mode].append(round(got))
                print("round %d reads from %-7s batch 1: %d ops/s" % (r, mode, got), flush=True)
    finally:
        hosts.close()
    return _summary(rows, "replica", "primary", "ratio_replica_to_primary")


def failovers(folder: str, shards: int, n: int) -> dict:
    hosts = three(tempfile.mkdtemp(dir=folder), shards, 3)
    times = []
    try:
        for i in range(n):
            st = hosts.status()    # the next node (in turn) that holds a primary
            names = ["n%d" % (1 + (i + k) % 3) for k in range(3)]
            name, shard = next((m, r["shard"]) for m in names for r in st["replica_shards"]
                               if r["primary"] == m)
            victim = hosts.nodes[name]
            other = next(x for x in hosts.nodes.values() if x is not victim)
            with other.client(discover=False, timeout=30) as c:
                t0 = time.monotonic()
                victim.kill()
                took = wait_written(c, key_on(shard, shards), t0)
            times.append(round(took, 2))
            print("failover %d (kill %s, shard %d): %.2f s" % (i, victim.name, shard, took),
                  flush=True)
            victim.start()
            wait_for(lambda: in_step(hosts), 60, "the node catches up")
    finally:
        hosts.close()
    return {"seconds": times, "median": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="flin-replicas-")
    out = {"machine": os.uname().nodename, "cpus": os.cpu_count(),
           "writes": writes(folder, a.shards, a.rounds, a.duration),
           "reads": reads(folder, a.shards, a.rounds, a.duration),
           "failover": failovers(folder, a.shards, a.failovers)}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
