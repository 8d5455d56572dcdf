"""A Flin cluster for one bench run: ``python -m flin start`` in a subprocess
(as tests/conftest.py does it), and the CPU time its processes used.

The harness owns the cluster: it starts it in a temporary folder, waits for
the supervisor's "ready" line, and on ``stop()`` sends SIGTERM and waits, so
nothing is left behind (the supervisor stops and reaps its own children).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from flin.supervisor import processes

_TICK = os.sysconf("SC_CLK_TCK")
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def die_with_parent(name: str | None = None) -> None:
    """Have the kernel SIGTERM this process when the bench dies, even by
    SIGKILL, so that no server or load process outlives it (Linux)."""
    if _libc is not None:
        if name:
            _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ClusterError(RuntimeError):
    """The cluster did not start; the message carries the tail of its log."""


class ClusterProcess:
    """``flin start --data FOLDER/data --shards N --bind ipc://FOLDER/c.sock``."""

    def __init__(self, folder: str, shards: int, extra: list[str] | None = None) -> None:
        self.folder = folder
        self.shards = shards
        self.data = os.path.join(folder, "data")
        self.endpoint = "ipc://" + os.path.join(folder, "c.sock")
        self.log_path = os.path.join(folder, "flin.log")
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    def start(self, timeout: float = 60.0) -> "ClusterProcess":
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flin", "start", "--data", self.data,
                 "--shards", str(self.shards), "--bind", self.endpoint,
                 "--log-level", "WARNING", *self.extra],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace")
        if "ready" not in line:
            self.stop(timeout)
            raise ClusterError("the cluster did not start: %r\n%s" % (line, self.log_tail()))
        self.startup_s = time.monotonic() - t0
        return self

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The supervisor and every process below it."""
        return [] if self.proc is None else [self.proc.pid, *descendants(self.proc.pid)]

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the supervisor and wait for it; its exit code (None if not started)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return proc.wait(10)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def descendants(pid: int) -> list[int]:
    """Every process whose parent chain leads to ``pid`` (from /proc)."""
    return sorted(processes.descendants(pid))


def role_of(comm: str) -> str:
    """Group a Flin process by its name (the supervisor names the children)."""
    if comm.startswith("flin-router"):
        return "router"
    if comm.startswith("flin-shard"):
        return "shards"
    return "supervisor" if comm.startswith("python") else comm


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``pids``, summed per role."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        role = role_of(comm)
        out[role] = out.get(role, 0.0) + cpu
    return out
