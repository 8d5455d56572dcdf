"""Medians and ratios of a ``perf/resp_bench.sh`` folder: redis-benchmark's
requests per second against Flin's RESP port and a redis-server, and
``flin bench`` (flin.Client) at the same shape.

    python perf/resp_summary.py OUT
"""
from __future__ import annotations

import csv
import glob
import json
import os
import re
import statistics
import sys


def _benchmark(folder: str, name: str, p: int) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "%s-P%d-run*.csv" % (name, p)))):
        with open(path) as f:
            for row in csv.DictReader(f):
                got.setdefault(row["test"], []).append(float(row["rps"]))
    return got


def _client(folder: str, p: int) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "client-P%d-run*.json" % p))):
        with open(path) as f:
            for res in json.load(f)["results"]:
                if res["target"] == "flin":
                    test = {"write": "SET", "read": "GET"}[res["phase"]]
                    got.setdefault(test, []).append(res["requests_per_sec"])
    return got


def main(folder: str) -> None:
    print("requests/s, medians of %s runs (64 connections, 1 KiB values)"
          % len(glob.glob(os.path.join(folder, "flin-P16-run*.csv"))))
    print("%-4s %-4s %12s %12s %8s %14s %10s" % ("P", "op", "flin RESP", "redis", "ratio",
                                                 "flin.Client", "RESP/Client"))
    for p in (16, 1):
        flin, redis, client = _benchmark(folder, "flin", p), _benchmark(folder, "redis", p), \
            _client(folder, p)
        for test in ("SET", "GET"):
            f, r = statistics.median(flin[test]), statistics.median(redis[test])
            c = statistics.median(client[test]) if test in client else float("nan")
            print("%-4d %-4s %12.0f %12.0f %8.3f %14.0f %10.3f" % (p, test, f, r, f / r, c, f / c))
    runs = [re.sub(r".*run(\d+).*", r"\1", x) for x in glob.glob(os.path.join(folder, "*.csv"))]
    print("rounds: %s" % " ".join(sorted(set(runs))))


if __name__ == "__main__":
    main(sys.argv[1])
