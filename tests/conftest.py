"""Fixtures that start a real Flin cluster (real processes, ipc endpoints in a
temporary folder) and tear it down, failing if any process is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import pytest

import flin
from flin import procutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_alive = procutil.alive
_descendants = procutil.descendants


@dataclass
class Cluster:
    """A running cluster started as ``flin start`` in a subprocess."""

    data: str
    endpoint: str
    shards: int
    extra: list = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: str = ""
    pids: set = field(default_factory=set)
    startup_s: float = 0.0

    def start(self, timeout: float = 30.0) -> "Cluster":
        self.log_path = os.path.join(os.path.dirname(self.data), "flin-%d.log" % time.monotonic_ns())
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flin", "start", "--data", self.data, "--shards",
             str(self.shards), "--bind", self.endpoint, *self.extra],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT)
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            self.proc.wait(timeout)
            raise RuntimeError("cluster did not start: %r\n%s" % (line, self.log()))
        self.startup_s = time.monotonic() - t0
        self.pids = _descendants(self.proc.pid) | {self.proc.pid}
        return self

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-5000:]

    def client(self, **kw) -> flin.Client:
        kw.setdefault("timeout", 10.0)
        return flin.Client(self.endpoint, **kw)

    def child_pids(self) -> set[int]:
        return _descendants(self.proc.pid)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor; return its exit code; fail on leftovers."""
        if self.proc is None:
            return 0
        self.pids |= _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.stdout.close()
        self.proc = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self.pids):
            time.sleep(0.05)
        left = [p for p in self.pids if _alive(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert not left, "processes left behind after stop: %s" % left
        return code

    def kill(self) -> None:
        """SIGKILL the whole process tree (for crash tests)."""
        pids = _descendants(self.proc.pid) | {self.proc.pid}
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def tmp_short():
    """A temporary folder with a short path (ipc paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        yield d


def make_cluster(folder: str, shards: int = 8, extra: list | None = None) -> Cluster:
    return Cluster(data=os.path.join(folder, "data"),
                   endpoint="ipc://" + os.path.join(folder, "c.sock"),
                   shards=shards, extra=extra or [])


@pytest.fixture
def cluster(tmp_short):
    """A fresh 8-shard cluster for one test."""
    c = make_cluster(tmp_short).start()
    yield c
    if c.proc is not None:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def shared_cluster():
    """One 8-shard cluster shared by a module's tests (use distinct keys)."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d).start()
        yield c
        if c.proc is not None:
            assert c.stop() == 0


@pytest.fixture
def client(shared_cluster):
    with shared_cluster.client() as c:
        yield c
