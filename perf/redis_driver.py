"""Baseline ``redis``: a local redis-server started in a temporary folder and
the same load driven through redis-py.

The server persists as Flin does (AOF, ``appendfsync everysec``, no RDB
snapshots) and listens on a unix socket only, as the Flin cluster the
harness starts does (ipc). Each load process opens one connection per
logical worker and keeps ``pipeline`` requests in flight on each (Redis
answers a connection in order, so a FIFO of send times gives each reply's
latency); replies that arrive together are answered with one write of the
next requests. A request is SET/MSET, GET/MGET, or ``batch`` INCRBY
commands. Redis has no ordered range scan, so the scan workload is skipped.
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from typing import Any, Callable

from .cluster_proc import die_with_parent
from .phase import PhaseSpec, Recorder
from .workload import INCR, READ, WRITE, Plan, counter, key

UNSUPPORTED = {"scan": "Redis has no ordered range scan"}


def unavailable() -> str | None:
    """Why the redis baseline cannot run here, or None if it can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (scripts/install-redis installs it)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'flin[perf]')"
    return None


def server_version() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class RedisServer:
    """``redis-server`` on ``FOLDER/redis.sock`` with its AOF in FOLDER."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.socket = os.path.join(folder, "redis.sock")
        self.log_path = os.path.join(folder, "redis.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "RedisServer":
        import redis
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", self.folder, "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--daemonize", "no", "--logfile", self.log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(unix_socket_path=self.socket) as r:
                    r.ping()
                return self
            except (redis.ConnectionError, FileNotFoundError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start:\n" + self._log_tail())
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        return [] if self.proc is None else [self.proc.pid]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)   # redis fsyncs its AOF and exits
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def commands(kind: str, idx: list[int], value: bytes) -> list[tuple]:
    """The Redis commands of one request."""
    if kind == WRITE:
        if len(idx) == 1:
            return [("SET", key(idx[0]), value)]
        args: list = ["MSET"]
        for i in idx:
            args += (key(i), value)
        return [tuple(args)]
    if kind == READ:
        if len(idx) == 1:
            return [("GET", key(idx[0]))]
        return [("MGET", *[key(i) for i in idx])]
    if kind == INCR:
        return [("INCRBY", counter(i), 1) for i in idx]
    raise ValueError("the redis baseline has no %r requests" % kind)


def drive(spec: PhaseSpec, proc: int, plan: Plan, rec: Recorder,
          go: Callable[[], int]) -> None:
    import redis
    from redis.connection import UnixDomainSocketConnection
    if spec.phase in UNSUPPORTED:
        raise ValueError("redis: %s" % UNSUPPORTED[spec.phase])
    value = os.urandom(spec.value_size)
    conns = [UnixDomainSocketConnection(path=spec.address, socket_timeout=spec.timeout)
             for _ in range(spec.workers_of(proc))]
    sel = selectors.DefaultSelector()
    # per connection: requests in flight, oldest first: [t_sent, kind, keys, replies left,
    # ok, failed, missing, why]
    fifo: dict[Any, deque] = {}
    clock, nxt = time.perf_counter_ns, plan.next
    try:
        for c in conns:
            c.connect()
            sel.register(c._sock, selectors.EVENT_READ, c)
            fifo[c] = deque()
        deadline = go()

        def send(c: Any, count: int) -> None:
            cmds: list[tuple] = []
            entries = []
            for _ in range(count):
                kind, idx = nxt()
                batch = commands(kind, idx, value)
                cmds += batch
                entries.append([0, kind, len(idx), len(batch), 0, 0, 0, None])
            packed = c.pack_commands(cmds)
            t = clock()
            for e in entries:
                e[0] = t
            fifo[c].extend(entries)
            c.send_packed_command(packed, check_health=False)

        for c in conns:
            send(c, spec.pipeline)
        inflight = len(conns) * spec.pipeline
        while inflight:
            events = sel.select(spec.timeout)
            if not events:
                for q in fifo.values():
                    for e in q:
                        rec.done(clock() - e[0], 0, e[2], 0, "timeout")
                return
            for sk, _ in events:
                c = sk.data
                q = fifo[c]
                refill = 0
                while q:
                    e = q[0]
                    try:
                        r = c.read_response(disconnect_on_error=False)
                        _tally(e, r)
                    except redis.ResponseError as exc:
                        e[5] += e[2] if e[1] != INCR else 1
                        e[7] = exc
                    e[3] -= 1
                    if e[3] == 0:
                        q.popleft()
                        t1 = clock()
                        ok = e[2] - e[5] if e[1] == INCR else (0 if e[5] else e[4])
                        rec.done(t1 - e[0], ok, e[5], e[6], e[7])
                        inflight -= 1
                        if t1 < deadline:
                            refill += 1
                    if not c.can_read(0):
                        break
                if refill:
                    send(c, refill)
                    inflight += refill
    finally:
        sel.close()
        for c in conns:
            c.disconnect()


def _tally(e: list, r: Any) -> None:
    """Count one reply into its request's entry."""
    kind, n = e[1], e[2]
    if kind == READ:
        if n == 1:
            e[4], e[6] = 1, int(r is None)
        else:
            e[4], e[6] = n, sum(1 for v in r if v is None)
    elif kind == WRITE:
        e[4] = n
