"""What the harness tells a person: the machine and versions, a progress bar
on stderr while a phase runs, and the table of results on stdout."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import TextIO

BAR = 30                 # characters of the progress bar


def machine() -> dict:
    """Cores, CPU model, memory, OS, and the load when the run began."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "hostname": platform.node(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "flin"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions(redis_server: str = "") -> dict:
    import plyvel
    import zmq
    out = {
        "python": platform.python_version(),
        "flin": _version("flin"),
        "flin_git": _git_commit(),
        "plyvel": _version("plyvel"),
        "leveldb": getattr(plyvel, "__leveldb_version__", None),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": _version("msgpack"),
        "hdrhistogram": _version("hdrhistogram"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
    }
    if redis_server:
        out["redis_server"] = redis_server
    return out


class Progress:
    """``[flin write] ######....  1.2/3.0 s  18,201 ops/s`` redrawn on stderr
    (a TTY); elsewhere one line when the phase ends."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if enabled is None else enabled
        self.label = ""
        self.duration = 1.0
        self._last = 0.0

    def begin(self, target: str, phase: str, duration: float) -> None:
        self.label, self.duration = "%s %s" % (target, phase), duration

    def update(self, elapsed: float, ops: int) -> None:
        if not self.tty or time.monotonic() - self._last < 0.1:
            return
        self._last = time.monotonic()
        done = min(1.0, elapsed / self.duration) if self.duration > 0 else 1.0
        fill = int(done * BAR)
        rate = ops / elapsed if elapsed > 0 else 0.0
        tail = "draining" if elapsed > self.duration else "%4.1f/%.1f s" % (elapsed, self.duration)
        self.stream.write("\r[%-13s] %s%s %s %12s ops/s" % (
            self.label, "#" * fill, "." * (BAR - fill), tail, "{:,.0f}".format(rate)))
        self.stream.flush()

    def end(self, result: dict) -> None:
        line = "[%-13s] %s ops/s, p99 %.2f ms" % (
            self.label, "{:,.0f}".format(result["ops_per_sec"]), result["latency_ms"]["p99"])
        if self.tty:
            self.stream.write("\r" + " " * (BAR + 60) + "\r")
        self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _n(x: float) -> str:
    return "{:,.0f}".format(x)


def table(doc: dict) -> str:
    """The results as a text table, with the run's shape above it."""
    c = doc["config"]
    head = ("Flin bench: %d workers x %d in flight, batch %d, %d-byte values, %.1f s per "
            "phase, %s, %d load processes (%s client)"
            % (c["workers"], c["pipeline"], c["batch"], c["value_size"], c["duration"],
               ("%d shards, %s router(s) (started by the harness)"
                % (c["shards"], c.get("routers", 1))) if not c["endpoint"]
               else "cluster at %s" % c["endpoint"], c["processes"], c.get("client", "sync")))
    cols = ("target", "phase", "ops/s", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
            "1/thr us", "errors", "load CPU", "server CPU", "srv us/op")
    rows = [cols]
    for r in doc["results"]:
        lat = r["latency_ms"]
        server = r.get("server_cpu_cores") or {}
        per_op = r.get("server_cpu_us_per_op") or {}
        rows.append((
            r["target"], r["phase"].upper(), _n(r["ops_per_sec"]), _n(r["requests_per_sec"]),
            "%.3f" % lat["p50"], "%.3f" % lat["p99"], "%.3f" % lat["p999"], "%.3f" % lat["max"],
            "%.2f" % (r["inverse_throughput_us"] or 0), str(r["errors"]),
            "%.2f cores" % r["load_cpu"]["cores"],
            ("%.2f cores" % sum(server.values())) if server else "-",
            ("%.1f" % per_op["total"]) if per_op else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = [head, ""]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for phase, ratios in doc["ratios"].items():
        if ratios:
            lines.append("%-6s Flin ops/s as a fraction of: %s" % (phase.upper(), ", ".join(
                "%s %.3f" % (name, v) for name, v in ratios.items())))
    for s in doc.get("skipped", []):
        lines.append("skipped: %s" % s)
    lines += [
        "",
        "ops/s counts keys (a batch of N keys is N ops); req/s counts requests.",
        "p50..max: true per-request latency (send to reply), from an HdrHistogram.",
        "1/thr us: elapsed time / ops = 1/throughput. This is the figure the Go Flin "
        "published as \"latency\"; it is not a latency.",
        "load CPU: cores used by the load generator itself (the engine baseline is its own load);"
        " server CPU: cores used by the server processes (%d cores on this machine);"
        " srv us/op: their CPU time per op (router, shards and supervisor together)."
        % (doc["machine"]["cores"] or 0),
    ]
    return "\n".join(lines)
