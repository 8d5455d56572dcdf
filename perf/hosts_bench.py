"""Many hosts on one machine, measured (issue 17's table). Run from a checkout:

    python -m flin_perf.hosts_bench [--shards 6] [--rounds 2] [--duration 3]
        [--move-mb 1024] [--writers 2] [--settle 10] [--json F]

1. Throughput: a one-host cluster (SHARDS shards, 3 routers, Unix-socket
   links) and three nodes on 127.0.0.2-4 (SHARDS shards in all, 1 router
   each, TCP links with CURVE), alternated round by round, each measured by
   ``flin bench --endpoint`` (64 workers, write then read, batch 1 and 100);
   the clients learn all three routers either way. The ratio is the TCP +
   CURVE cost of the links between nodes.
2. A move: ~MOVE_MB of 1 KiB values loaded into one shard of n1, then
   (after SETTLE seconds, for the load's compactions) ``flin cluster
   add-node n3`` moves it to n3 with no load: MB/s is the
   bytes the mover wrote over its time, and over the CLI's whole run.
3. The same with WRITERS processes doing SETs (one at a time, on keys of the
   moving shard: the worst case) before and during a move back (``flin
   cluster drain n3``): their ops/s during vs before.

It starts the same real processes the tests do (``tests.support.hosts``:
an etcd in a temporary folder, ``flin start --etcd``), hence "from a checkout".
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time

import flin
from flin.ring import Ring

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.cluster import make_cluster  # noqa: E402
from tests.support.hosts import Hosts, flin_cli  # noqa: E402

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def bench(endpoint: str, batch: int, duration: float, out: str) -> dict:
    got = subprocess.run([sys.executable, "-m", "flin", "bench", "--endpoint", endpoint,
                          "--batch", str(batch), "--duration", str(duration), "--no-progress",
                          "--json", out], capture_output=True, text=True, cwd=ROOT)
    if got.returncode != 0:
        raise RuntimeError(got.stderr[-2000:])
    with open(out) as f:
        rep = json.load(f)
    return {r["phase"]: round(r["ops_per_sec"]) for r in rep["results"] if r["target"] == "flin"}


def throughput(folder: str, shards: int, rounds: int, duration: float, keys: str) -> dict:
    rows: dict[str, list] = {}
    for r in range(rounds):
        for kind in ("one-host", "three-nodes"):
            d = tempfile.mkdtemp(dir=folder)
            if kind == "one-host":
                c = make_cluster(d, shards, ["--routers", "3", "--bind",
                                             "tcp://127.0.0.1:17700"])
                c.endpoint = "tcp://127.0.0.1:17700"
                c.start()
                ep, stop = c.endpoint, c.stop
            else:
                h = Hosts(d)
                h.create(shards, ["n1", "n2", "n3"])
                nodes = [h.node("n%d" % (i + 1), host, ["--backend-keys", keys]).start()
                         for i, host in enumerate(HOSTS)]
                ep, stop = nodes[0].endpoint, h.close
            try:
                for batch in (1, 100):
                    got = bench(ep, batch, duration, os.path.join(d, "b%d.json" % batch))
                    for phase, ops in got.items():
                        rows.setdefault("%s b%d %s" % (kind, batch, phase), []).append(ops)
                        print("round %d %s batch %d %s: %d ops/s" % (r + 1, kind, batch,
                                                                      phase, ops), flush=True)
            finally:
                stop()
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    ratios = {}
    for batch in (1, 100):
        for phase in ("write", "read"):
            a, b = med.get("one-host b%d %s" % (batch, phase)), \
                med.get("three-nodes b%d %s" % (batch, phase))
            if a and b:
                ratios["b%d %s" % (batch, phase)] = round(b / a, 3)
    return {"runs": rows, "medians": med, "three_nodes_vs_one_host": ratios}


def _load(endpoint: str, keys: list[bytes], size: int) -> None:
    value = os.urandom(size)
    with flin.Client(endpoint, timeout=60) as c:
        for i in range(0, len(keys), 1000):
            c.mset([(k, value) for k in keys[i:i + 1000]])


def _write(endpoint: str, keys: list[bytes], stop: "mp.synchronize.Event", out: str) -> None:
    value = os.urandom(1024)
    rnd = random.Random(os.getpid())
    times = []
    with flin.Client(endpoint, timeout=30, retries=5) as c:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                c.set(rnd.choice(keys), value)
            except flin.errors.FlinError:
                continue
            times.append(t0)
    with open(out, "w") as f:
        json.dump(times, f)


def move(folder: str, move_mb: int, writers: int, before: float, keys_dir: str,
         settle: float = 10.0) -> dict:
    h = Hosts(folder)
    out: dict = {}
    try:
        h.create(3, ["n1", "n2"])                 # n1: shards 0 and 2; add-node moves 2
        n1 = h.node("n1", HOSTS[0], ["--backend-keys", keys_dir]).start()
        h.node("n2", HOSTS[1], ["--backend-keys", keys_dir]).start()
        ring = Ring(3)
        count = move_mb * 1_000_000 // 1040
        keys: list[bytes] = []
        i = 0
        while len(keys) < count:
            k = b"mv:%010d" % i
            if ring.shard(k) == 2:
                keys.append(k)
            i += 1
        t0 = time.monotonic()
        half = len(keys) // 2
        loaders = [mp.Process(target=_load, args=(n1.endpoint, part, 1024))
                   for part in (keys[:half], keys[half:])]
        for p in loaders:
            p.start()
        for p in loaders:
            p.join()
        out["loaded_keys"], out["load_s"] = len(keys), round(time.monotonic() - t0, 1)
        time.sleep(settle)                   # the load's compactions, before "no load"
        print("loaded %d keys (%.0f MB) into shard 2 in %.1fs"
              % (len(keys), len(keys) * 1040 / 1e6, out["load_s"]), flush=True)
        h.node("n3", HOSTS[2], ["--backend-keys", keys_dir]).start()

        def timed(*args: str) -> float:
            t = time.monotonic()
            got = flin_cli("cluster", *args, *h.etcd_args(), timeout=3600)
            if got.returncode != 0:
                raise RuntimeError(got.stdout + got.stderr)
            return time.monotonic() - t

        def progress() -> dict:
            from flin.cluster.etcd import Etcd, EtcdOptions
            from flin.cluster.mover import progress_key
            c = Etcd(EtcdOptions.parse(h.etcd.url))
            try:
                raw, _ = c.get(progress_key(h.cluster))
                return json.loads(raw) if raw else {}
            finally:
                c.close()

        wall = timed("add-node", "n3")
        p = progress()
        out["idle_move"] = {"mb": round(p["bytes"] / 1e6, 1), "mover_s": p["seconds"],
                            "mover_mb_s": p["mb_s"], "cli_s": round(wall, 2),
                            "cli_mb_s": round(p["bytes"] / 1e6 / wall, 1)}
        print("idle move:", out["idle_move"], flush=True)
        if writers:
            stop = mp.Event()
            outs = [os.path.join(folder, "w%d.json" % i) for i in range(writers)]
            procs = [mp.Process(target=_write, args=(n1.endpoint, keys, stop, o))
                     for o in outs]
            for p_ in procs:
                p_.start()
            time.sleep(before)
            r0 = time.monotonic()
            wall = timed("drain", "n3")                 # shard 2 goes back
            r1 = time.monotonic()
            stop.set()
            for p_ in procs:
                p_.join()
            times = [t for o in outs for t in json.load(open(o))]
            rate_b = len([t for t in times if r0 - before <= t < r0]) / before
            rate_d = len([t for t in times if r0 <= t < r1]) / (r1 - r0)
            p = progress()
            out["busy_move"] = {"mb": round(p["bytes"] / 1e6, 1), "mover_mb_s": p["mb_s"],
                                "cli_s": round(wall, 2), "writes_before": round(rate_b),
                                "writes_during": round(rate_d),
                                "ratio": round(rate_d / rate_b, 3) if rate_b else None}
            print("move under writes:", out["busy_move"], flush=True)
    finally:
        h.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--move-mb", type=int, default=1024)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--before", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds after the load before the move (its compactions)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    result: dict = {"args": vars(a), "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="flin-hosts-bench-", dir="/tmp") as d:
        keys = os.path.join(d, "keys")
        flin_cli("keygen", keys, "--server", "router", "--client", "worker")
        if not a.skip_throughput:
            result["throughput"] = throughput(d, a.shards, a.rounds, a.duration, keys)
            print(json.dumps(result["throughput"]["three_nodes_vs_one_host"]))
        if a.move_mb:
            md = os.path.join(d, "move")
            os.makedirs(md)
            result["move"] = move(md, a.move_mb, a.writers, a.before, keys, a.settle)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
