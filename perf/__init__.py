"""Flin's perf harness, behind ``flin bench`` (see perf/README.md). It lives in
``perf/`` and installs as ``flin_perf`` (never a top-level ``perf``).

One module per role:

    bench.py         the run: settings, targets x phases, ratios, the JSON document
    workload.py      key names, key choosers (stripes, uniform, Zipf), what each request is
    load.py          one phase: P load processes in a closed loop, counters, merged histograms
    phase.py         what a load process is told and what it records (PhaseSpec, Recorder)
    flin_driver.py   the load against a Flin router (``Client.submit`` / ``receive``)
    engine.py        baseline: the same workload straight on plyvel, one process
    redis_driver.py  baseline: a local redis-server and the load through redis-py
    cluster_proc.py  start / stop a Flin cluster (``python -m flin start``) and read CPU use
    report.py        machine and versions, progress bar, terminal table
    plot.py          latency distribution and throughput over time (matplotlib)
    threads.py       threads sharing one Client vs one Client each (``python -m flin_perf.threads``)
"""
from __future__ import annotations

from .bench import BenchConfig, run

__all__ = ["BenchConfig", "run"]
