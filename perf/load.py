"""One phase of load: P forked load processes, each running a target's driver
in a closed loop, started together on a barrier and measured alike.

A driver (``flin_driver.drive``, ``engine.drive``, ``redis_driver.drive``;
they import ``phase.py``, never this module)
prepares (connects, opens), calls ``go()`` (the barrier; returns the deadline
in ``perf_counter_ns``), issues requests until the deadline, waits for the
ones in flight, and reports each reply to the ``Recorder``: its latency (send
to reply, ns) and the keys it acknowledged, failed, or found missing.

Latencies are buffered in an array and recorded into the process's
HdrHistogram after the deadline (so the load pays no histogram cost); the
parent merges the encoded histograms. Each process also publishes its
acknowledged ops in shared memory, which the parent samples every 0.1 s for
the progress bar and the throughput-over-time series.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict
from typing import Any, Callable

from hdrh.histogram import HdrHistogram

from .cluster_proc import die_with_parent
from .phase import HIST_DIGITS, HIST_MAX_NS, PhaseSpec, Recorder
from .workload import Plan

SAMPLE_S = 0.1                     # s between samples of the shared op counters
PERCENTILES = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100)


class LoadError(RuntimeError):
    """A load process failed; the message carries its traceback."""


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _driver(target: str, client: str = "sync") -> Callable[..., None]:
    if target == "flin" and client in ("asyncio", "uvloop"):
        from .flin_aio_driver import drive
    elif target == "flin":
        from .flin_driver import drive
    elif target == "engine":
        from .engine import drive
    elif target == "redis":
        from .redis_driver import drive
    else:
        raise ValueError("unknown target %r" % target)
    return drive


def _child(spec: PhaseSpec, proc: int, counter: Any, barrier: Any, conn: Any) -> None:
    die_with_parent("flinbench-load")
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        plan = Plan(spec.phase, batch=spec.batch, keys=spec.keys, key_range=spec.key_range,
                    proc=proc, procs=spec.processes, seed=spec.seed)
        rec = Recorder(counter)
        cpu0 = [0.0]

        def go() -> int:
            barrier.wait(spec.timeout * 4)
            cpu0[0] = _cpu_s()
            rec.t_start = time.perf_counter_ns()
            return rec.t_start + int(spec.duration * 1e9)

        _driver(spec.target, spec.client)(spec, proc, plan, rec, go)
        rec.t_end = time.perf_counter_ns()
        rec.cpu = _cpu_s() - cpu0[0]
        conn.send({
            "ops": rec.ops, "requests": rec.requests, "errors": rec.errors,
            "misses": rec.misses, "error_samples": rec.error_samples,
            "t_start": rec.t_start, "t_end": rec.t_end, "cpu_s": rec.cpu,
            "issued": plan.issued, "hist": rec.histogram().encode(),
        })
    except BaseException:
        barrier.abort()
        conn.send({"failure": "load process %d (%s %s):\n%s"
                   % (proc, spec.target, spec.phase, traceback.format_exc())})
    finally:
        conn.close()


def run_phase(spec: PhaseSpec, server_cpu: Callable[[], dict[str, float]] | None = None,
              progress: Callable[[float, int], None] | None = None) -> dict:
    """Run one phase; return its figures (see ``summarize``)."""
    ctx = mp.get_context("fork")
    n = spec.processes
    counters = [ctx.RawValue("q", 0) for _ in range(n)]
    barrier = ctx.Barrier(n + 1)
    pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
    procs = [ctx.Process(target=_child, args=(spec, p, counters[p], barrier, pipes[p][1]),
                         name="flinbench-%s-%d" % (spec.target, p), daemon=True)
             for p in range(n)]
    results: dict[int, dict] = {}
    try:
        for pr in procs:
            pr.start()
        for _, w in pipes:
            w.close()
        try:
            barrier.wait(spec.timeout * 4)
        except threading.BrokenBarrierError:
            raise LoadError(_failures(pipes, results) or "load processes did not start") from None
        t0 = time.perf_counter()
        cpu0 = server_cpu() if server_cpu else {}
        samples: list[tuple[float, int]] = [(0.0, 0)]
        readers = {pipes[p][0]: p for p in range(n)}
        while len(results) < n:
            for r in mp.connection.wait(list(readers), SAMPLE_S):
                p = readers.pop(r)  # type: ignore[call-overload]
                try:
                    results[p] = r.recv()
                except EOFError:
                    results[p] = {"failure": "load process %d died (exit code %s)"
                                  % (p, procs[p].exitcode)}
            now = time.perf_counter() - t0
            ops = sum(c.value for c in counters)
            if now - samples[-1][0] >= SAMPLE_S * 0.9:
                samples.append((now, ops))
            if progress:
                progress(now, ops)
            if now > spec.duration + spec.timeout * 2:
                raise LoadError("load processes still running %.0f s after the phase ended"
                                % (now - spec.duration))
        cpu1 = server_cpu() if server_cpu else {}
    finally:
        for pr in procs:
            pr.join(2)
            if pr.is_alive():
                pr.terminate()
                pr.join(5)
        for r, _ in pipes:
            r.close()
    failures = [r["failure"] for r in results.values() if "failure" in r]
    if failures:
        raise LoadError("\n".join(failures))
    server = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
    return summarize(spec, [results[p] for p in range(n)], samples, server)


def _failures(pipes: list, results: dict) -> str:
    out = []
    for p, (r, _) in enumerate(pipes):
        if p not in results and r.poll(1):
            try:
                msg = r.recv()
            except EOFError:
                continue
            results[p] = msg
            if "failure" in msg:
                out.append(msg["failure"])
    return "\n".join(out)


def _ms(ns: float) -> float:
    return round(ns / 1e6, 4)


def summarize(spec: PhaseSpec, parts: list[dict], samples: list[tuple[float, int]],
              server_cpu_s: dict[str, float]) -> dict:
    """The figures of one phase from its load processes' reports."""
    hist = HdrHistogram(1, HIST_MAX_NS, HIST_DIGITS)
    for part in parts:
        hist.add(HdrHistogram.decode(part["hist"]))
    elapsed = max(p["t_end"] for p in parts) - min(p["t_start"] for p in parts)
    elapsed_s = max(elapsed / 1e9, 1e-9)
    ops = sum(p["ops"] for p in parts)
    requests = sum(p["requests"] for p in parts)
    load_cpu = sum(p["cpu_s"] for p in parts)
    enc = hist.encode()
    # samples until the last reply; after it the processes only build histograms
    timeline = [[round((t0 + t1) / 2, 3), round((o1 - o0) / (t1 - t0), 1)]
                for (t0, o0), (t1, o1) in zip(samples, samples[1:])
                if t1 > t0 and t1 <= elapsed_s + SAMPLE_S / 2]
    return {
        "target": spec.target,
        "phase": spec.phase,
        "ops_per_sec": round(ops / elapsed_s, 1),
        "requests_per_sec": round(requests / elapsed_s, 1),
        "ops": ops,
        "requests": requests,
        "errors": sum(p["errors"] for p in parts),
        "misses": sum(p["misses"] for p in parts),
        "error_samples": [s for p in parts for s in p["error_samples"]][:5],
        "elapsed_s": round(elapsed_s, 4),
        "latency_ms": {
            "p50": _ms(hist.get_value_at_percentile(50)),
            "p99": _ms(hist.get_value_at_percentile(99)),
            "p999": _ms(hist.get_value_at_percentile(99.9)),
            "max": _ms(hist.get_max_value()),
            "mean": _ms(hist.get_mean_value()),
        },
        # What the Go Flin published as "latency": elapsed time / ops, i.e.
        # 1/throughput. Not a latency; kept, labelled, for comparison.
        "inverse_throughput_us": round(1e6 / (ops / elapsed_s), 3) if ops else None,
        "latency_distribution_ms": [[q, _ms(hist.get_value_at_percentile(q))]
                                    for q in PERCENTILES],
        "load_cpu": {"processes": spec.processes, "cpu_s": round(load_cpu, 3),
                     "cores": round(load_cpu / elapsed_s, 3)},
        "server_cpu_cores": {role: round(s / elapsed_s, 3) for role, s in server_cpu_s.items()},
        # the server's CPU per key acknowledged, by process role and in all
        "server_cpu_us_per_op": ({**{role: round(1e6 * s / ops, 2) for role, s in
                                     server_cpu_s.items()},
                                  "total": round(1e6 * sum(server_cpu_s.values()) / ops, 2)}
                                 if ops and server_cpu_s else {}),
        "spec": {k: v for k, v in asdict(spec).items() if k not in ("address", "seed")},
        "issued_per_process": [p["issued"] for p in parts],
        "throughput_timeline": timeline,
        "histogram_ns": enc.decode() if isinstance(enc, bytes) else enc,
    }
