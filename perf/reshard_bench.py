"""A live reshard, measured: how fast the keys move, and what writers see
meanwhile (issue 16's table).

    python -m flin_perf.reshard_bench --keys 2000000 --value-size 1024 \\
        --from 8 --to 16 [--writers 2] [--before 5] [--pause/--no-pause] [--json F]

starts a cluster of FROM shards in a temporary folder (ipc), loads KEYS keys
of VALUE-SIZE bytes (MSET of 1,000, 2 processes), then with ``--writers``
runs that many processes each doing SETs of one value, one at a time, on
random loaded keys, for ``--before`` seconds and on through ``flin reshard
--shards TO``. It prints the reshard's own line and its steps, the moved MB/s
(data moved / the reshard's whole time), and the writers' ops/s before and
during the reshard (their ratio), and their latency during it (p50, p99,
max).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random

import shutil
import subprocess
import sys
import tempfile
import time

import flin


def _load(endpoint: str, lo: int, hi: int, size: int) -> None:
    value = os.urandom(size)
    with flin.Client(endpoint, timeout=60) as c:
        for i in range(lo, hi, 1000):
            c.mset([(b"bench:%09d" % j, value) for j in range(i, min(hi, i + 1000))])


def _write(endpoint: str, keys: int, size: int, stop: "mp.synchronize.Event", out: str) -> None:
    """SETs one at a time until ``stop``; (start, latency) of each into ``out``."""
    value = os.urandom(size)
    rnd = random.Random(os.getpid())
    times: list[tuple[float, float]] = []
    with flin.Client(endpoint, timeout=30, retries=5) as c:
        while not stop.is_set():
            k = b"bench:%09d" % rnd.randrange(keys)
            t0 = time.monotonic()
            try:
                c.set(k, value)
            except flin.errors.FlinError:
                continue
            times.append((t0, time.monotonic() - t0))
    with open(out, "w") as f:
        json.dump(times, f)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=2_000_000)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--from", dest="n", type=int, default=8)
    ap.add_argument("--to", dest="m", type=int, default=16)
    ap.add_argument("--writers", type=int, default=0)
    ap.add_argument("--before", type=float, default=5.0)
    ap.add_argument("--pause", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="flin-reshard-bench-", dir="/tmp")
    data, ep = os.path.join(d, "data"), "ipc://" + os.path.join(d, "c.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIN_")}
    proc = subprocess.Popen([sys.executable, "-m", "flin", "start", "--data", data, "--shards",
                             str(a.n), "--bind", ep, "--routers", "1", "--resp", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    result: dict = {"keys": a.keys, "value_size": a.value_size, "from": a.n, "to": a.m,
                    "writers": a.writers, "pause": a.pause}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"ready" in line:
                break
        t0 = time.monotonic()
        step = -(-a.keys // 2)
        loaders = [mp.Process(target=_load, args=(ep, lo, min(a.keys, lo + step), a.value_size))
                   for lo in range(0, a.keys, step)]
        for p in loaders:
            p.start()
        for p in loaders:
            p.join()
        result["load_s"] = round(time.monotonic() - t0, 1)
        print("loaded %d keys of %d B in %.1fs" % (a.keys, a.value_size, result["load_s"]))
        stop = mp.Event()
        outs = [os.path.join(d, "w%d.json" % i) for i in range(a.writers)]
        writers = [mp.Process(target=_write, args=(ep, a.keys, a.value_size, stop, o))
                   for o in outs]
        for p in writers:
            p.start()
        time.sleep(a.before if writers else 0)
        r0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "flin", "reshard", "--data", data,
                              "--shards", str(a.m), "--no-progress",
                              "--pause" if a.pause else "--no-pause"],
                             capture_output=True, text=True, env=env, check=True).stdout.strip()
        r1 = time.monotonic()
        stop.set()
        for p in writers:
            p.join()
        with open(os.path.join(data, "run", "reshard.json")) as f:
            progress = json.load(f)
        print(out)
        print("steps (s):", progress.get("steps"))
        result.update(line=out, steps=progress.get("steps"), moved_keys=progress["keys"],
                      moved_mb=round(progress["bytes"] / 1e6, 1), reshard_s=round(r1 - r0, 2),
                      pause_ms=progress.get("pause_ms"))
        result["moved_mb_s"] = round(progress["bytes"] / 1e6 / (r1 - r0), 1)
        print("moved %.1f MB in %.2fs: %.1f MB/s (the CLI's whole run)"
              % (result["moved_mb"], r1 - r0, result["moved_mb_s"]))
        if writers:
            times = [t for o in outs for t in json.load(open(o))]
            w0 = r0 - a.before
            before = [lat for t, lat in times if w0 <= t < r0]
            during = [lat for t, lat in times if r0 <= t < r1]
            rate_b, rate_d = len(before) / a.before, len(during) / (r1 - r0)
            result.update(writes_before=round(rate_b), writes_during=round(rate_d),
                          ratio=round(rate_d / rate_b, 3) if rate_b else None,
                          p50_ms=round(1000 * _pct(during, 0.5), 2),
                          p99_ms=round(1000 * _pct(during, 0.99), 2),
                          max_ms=round(1000 * max(during, default=0), 1),
                          p99_before_ms=round(1000 * _pct(before, 0.99), 2))
            print("writes: %d ops/s before, %d during (%.2fx); during: p50 %.2f ms, p99 %.2f "
                  "ms, max %.1f ms (p99 before %.2f ms)"
                  % (rate_b, rate_d, result["ratio"] or 0, result["p50_ms"], result["p99_ms"],
                     result["max_ms"], result["p99_before_ms"]))
    finally:
        subprocess.run([sys.executable, "-m", "flin", "stop", "--data", data], env=env,
                       capture_output=True)
        proc.wait(60)
        shutil.rmtree(d, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)



if __name__ == "__main__":
    main()
