"""``flin bench``: settings, then each target (Flin, then the baselines) through
every phase, the ratios Flin / baseline, the table, the JSON and the plot.

Unless ``endpoint`` names a running cluster, the harness starts its own in a
temporary folder and removes the folder at the end, whatever happens; the
baselines' folders (LevelDB, Redis AOF) are temporary too.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import report
from .cluster_proc import ClusterProcess, cpu_by_role
from .load import PhaseSpec, run_phase
from .workload import phases_for, scan_limit, written_range

TARGETS = ("flin", "engine", "redis")
BASELINES = ("engine", "redis")


def default_processes() -> int:
    """Load processes: one per core, at most 4. The Flin client costs about as
    much CPU per request as the router, so one process would be the bottleneck
    against Redis (and near it against Flin); past 4 the load processes mostly
    take cores from the server on a small machine."""
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass
class BenchConfig:
    shards: int = 64                  # shard processes of the cluster the harness starts
    routers: int | str = 1            # its router processes (a count, or "auto")
    client: str = "sync"              # the Flin load: sync (submit_many by hand), asyncio, uvloop
    endpoint: str | None = None       # a running cluster instead (no cluster started)
    workers: int = 64                 # concurrent logical workers, over all load processes
    value_size: int = 1024            # bytes per value
    duration: float = 3.0             # s of load per phase
    keys: int = 1_000_000             # key space: indices 0..keys-1
    pipeline: int = 1                 # requests in flight per worker
    batch: int = 1                    # keys per request (MSET/MGET); 1 = single-key ops
    workloads: tuple[str, ...] = ("write", "read")
    processes: int = field(default_factory=default_processes)   # load processes
    baselines: tuple[str, ...] = ()   # engine, redis
    json_path: str | None = None      # write the JSON document here
    plot_path: str | None = None      # draw the PNG here (matplotlib)
    seed: int = 1                     # key choices are reproducible per seed
    timeout: float = 30.0             # s without a reply before a load process gives up
    progress: bool | None = None      # progress bar (None: when stderr is a TTY)

    def check(self) -> None:
        if min(self.workers, self.value_size, self.keys, self.pipeline, self.batch,
               self.processes, self.shards) < 1:
            raise ValueError("workers, value size, keys, pipeline, batch, processes and "
                             "shards must be >= 1")
        if self.duration <= 0:
            raise ValueError("duration must be > 0 s")
        for b in self.baselines:
            if b not in BASELINES:
                raise ValueError("unknown baseline %r (one of %s)" % (b, ", ".join(BASELINES)))
        phases_for(self.workloads)
        if self.client not in ("sync", "asyncio", "uvloop"):
            raise ValueError("client must be sync, asyncio or uvloop, not %r" % self.client)
        if self.plot_path:
            from .plot import unavailable
            why = unavailable()
            if why:
                raise ValueError(why)


class BenchError(RuntimeError):
    """The run could not be made (a target failed to start or to run)."""


def _run_target(target: str, cfg: BenchConfig, phases: list[str], folder: str,
                progress: report.Progress, skipped: list[str]) -> list[dict]:
    """Every phase against one target; starts and stops what it needs."""
    address = ""
    server_pids: Callable[[], list[int]] = lambda: []
    stop: Callable[[], Any] = lambda: None
    procs = cfg.processes
    if target == "flin" and cfg.endpoint:
        address = cfg.endpoint
    elif target == "flin":
        cluster = ClusterProcess(os.path.join(folder, "flin"), cfg.shards,
                                 ["--routers", str(cfg.routers)])
        os.makedirs(cluster.folder)
        progress.note("bench: starting a %d-shard, %s-router cluster in %s"
                      % (cfg.shards, cfg.routers, cluster.folder))
        cluster.start()
        address, stop, server_pids = cluster.endpoint, cluster.stop, cluster.pids
    elif target == "engine":
        address, procs = os.path.join(folder, "engine"), 1
    elif target == "redis":
        from .redis_driver import UNSUPPORTED, RedisServer
        server = RedisServer(os.path.join(folder, "redis"))
        os.makedirs(server.folder)
        server.start()
        address, stop, server_pids = server.socket, server.stop, server.pids
        for p in phases:
            if p in UNSUPPORTED:
                skipped.append("redis %s: %s" % (p, UNSUPPORTED[p]))
        phases = [p for p in phases if p not in UNSUPPORTED]
    procs = min(procs, cfg.workers)
    results = []
    key_range = cfg.keys
    try:
        pids = server_pids()
        for phase in phases:
            spec = PhaseSpec(
                target=target, phase=phase, processes=procs, workers=cfg.workers,
                pipeline=cfg.pipeline, batch=cfg.batch, value_size=cfg.value_size,
                keys=cfg.keys, key_range=key_range, duration=cfg.duration,
                scan_limit=scan_limit(cfg.batch), seed=cfg.seed, address=address,
                timeout=cfg.timeout, client=cfg.client)
            progress.begin(target, phase, cfg.duration)
            result = run_phase(spec, (lambda: cpu_by_role(pids)) if pids else None,
                               progress.update)
            progress.end(result)
            if phase == "write":
                key_range = written_range(result["issued_per_process"], procs, cfg.keys)
            result["key_range"] = spec.key_range if phase != "write" else key_range
            results.append(result)
    finally:
        stop()
    return results


def _ratios(results: list[dict]) -> dict:
    flin = {r["phase"]: r["ops_per_sec"] for r in results if r["target"] == "flin"}
    out: dict[str, dict[str, float]] = {}
    for phase, ops in flin.items():
        out[phase] = {}
        for r in results:
            if r["target"] != "flin" and r["phase"] == phase and r["ops_per_sec"]:
                out[phase][r["target"]] = round(ops / r["ops_per_sec"], 4)
    return out


def _on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(cfg: BenchConfig, out: Any = None) -> dict:
    """Run the bench; print the table on ``out`` (stdout); return the JSON document."""
    cfg.check()
    out = out or sys.stdout
    progress = report.Progress(enabled=cfg.progress)
    phases = phases_for(cfg.workloads)
    skipped: list[str] = []
    targets = ["flin"] + [b for b in dict.fromkeys(cfg.baselines)]
    redis_version = ""
    if "redis" in targets:
        from .redis_driver import server_version, unavailable
        why = unavailable()
        if why:
            progress.note("bench: skipping the redis baseline: %s" % why)
            skipped.append("redis: %s" % why)
            targets.remove("redis")
        else:
            redis_version = server_version()
    doc: dict = {
        "config": {**dataclasses.asdict(cfg), "phases": phases,
                   "scan_limit": scan_limit(cfg.batch),
                   "command": " ".join(["flin", "bench", *sys.argv[2:]])
                   if os.path.basename(sys.argv[0]) in ("flin", "__main__.py") else None},
        "machine": report.machine(),
        "versions": report.versions(redis_version),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": [],
        "ratios": {},
        "skipped": skipped,
        "notes": {
            "ops_per_sec": "keys acknowledged per second (a batch of N keys is N ops)",
            "latency_ms": "true per-request latency, send to reply, from an HdrHistogram "
                          "(histogram_ns holds it, HdrHistogram-encoded)",
            "inverse_throughput_us": "elapsed / ops = 1/throughput: what the Go Flin "
                                     "published as 'latency'; not a latency",
            "load_cpu": "CPU used by the load processes themselves (cores = cpu_s / elapsed)",
            "server_cpu_us_per_op": "server CPU seconds / ops, in us, by process role and "
                                    "'total' (Flin only: the processes the harness can see)",
        },
    }
    folder = tempfile.mkdtemp(prefix="flinbench-", dir="/tmp")  # short: ipc paths are limited
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # clean up on SIGTERM as on Ctrl-C
        old_term = signal.signal(signal.SIGTERM, _on_term)
    try:
        for target in targets:
            doc["results"] += _run_target(target, cfg, phases, folder, progress, skipped)
    except Exception as exc:
        raise BenchError("%s: %s" % (type(exc).__name__, exc)) from exc
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(folder, ignore_errors=True)
    doc["ratios"] = _ratios(doc["results"])
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(report.table(doc), file=out)
    if cfg.json_path:
        with open(cfg.json_path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if cfg.plot_path:
        from .plot import plot
        plot(doc, cfg.plot_path)
    return doc
