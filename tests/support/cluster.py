"""A real Flin cluster for tests: ``flin start`` in a subprocess on ipc
endpoints in a temporary folder, stopped with SIGTERM, and a check that no
process is left behind."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import flin
from flin.supervisor.processes import alive, descendants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Supervised:
    """What a test does with a ``flin start`` subprocess it started."""

    proc: subprocess.Popen | None
    pids: set
    log_path: str
    endpoint: str

    def await_ready(self, what: str, timeout: float) -> None:
        """Wait for its ready line; RuntimeError with its log if it never comes."""
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            self.proc.wait(timeout)
            raise RuntimeError("%s did not start: %r\n%s" % (what, line, self.log()))
        self.pids = descendants(self.proc.pid) | {self.proc.pid}

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-5000:]

    def client(self, **kw) -> flin.Client:
        kw.setdefault("timeout", 10.0)
        return flin.Client(self.endpoint, **kw)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor; return its exit code; fail on leftovers."""
        if self.proc is None:
            return 0
        code = stop_tree(self.proc, self.pids, timeout)
        self.proc = None
        return code


@dataclass
class Cluster(Supervised):
    """A running cluster started as ``flin start`` in a subprocess."""

    data: str
    endpoint: str
    shards: int
    extra: list = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: str = ""
    pids: set = field(default_factory=set)
    startup_s: float = 0.0
    nofile: tuple[int, int] | None = None   # RLIMIT_NOFILE (soft, hard) to start it under

    def start(self, timeout: float = 30.0) -> "Cluster":
        self.log_path = os.path.join(os.path.dirname(self.data), "flin-%d.log" % time.monotonic_ns())
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        limit = self.nofile

        def preexec() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        routers = [] if "--routers" in self.extra else ["--routers", "1"]   # not auto: as on 2 cores
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flin", "start", "--data", self.data, "--shards",
             str(self.shards), "--bind", self.endpoint, *routers, *self.extra],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, preexec_fn=preexec)
        self.await_ready("cluster", timeout)
        self.startup_s = time.monotonic() - t0
        return self

    def child_pids(self) -> set[int]:
        return descendants(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the whole process tree (for crash tests)."""
        kill_tree(self.proc)
        self.proc = None


def stop_tree(proc: subprocess.Popen, pids: set, timeout: float) -> int:
    """SIGTERM a supervisor; its exit code; fail if any of its processes
    (``pids``, and its children now) is left behind."""
    pids |= descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    finally:
        proc.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "processes left behind after stop: %s" % left
    return code


def kill_tree(proc: subprocess.Popen) -> set:
    """SIGKILL a supervisor and every process under it at once; their pids."""
    pids = descendants(proc.pid) | {proc.pid}
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    proc.stdout.close()
    return pids


def make_cluster(folder: str, shards: int = 8, extra: list | None = None) -> Cluster:
    return Cluster(data=os.path.join(folder, "data"),
                   endpoint="ipc://" + os.path.join(folder, "c.sock"),
                   shards=shards, extra=extra or [])
