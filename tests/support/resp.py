"""For the Redis-protocol tests: a free port, a Flin cluster speaking RESP,
a real ``redis-server`` to compare with, and a raw RESP client that keeps
each reply's type (``+`` status, ``$`` bulk, ``:`` integer, ``-`` error...)
so that a comparison sees what redis-py would hide."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Any

from tests.support.cluster import Cluster, make_cluster


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def resp_cluster(folder: str, shards: int = 8, extra: list | None = None,
                 host: str = "127.0.0.1") -> tuple[Cluster, int]:
    """A started cluster with ``--resp HOST:PORT`` on a free port, and the port."""
    port = free_port(host)
    c = make_cluster(folder, shards, ["--resp", "%s:%d" % (host, port), *(extra or [])])
    return c.start(), port


class RedisServer:
    """A ``redis-server`` on a free loopback port in ``folder``, nothing saved."""

    def __init__(self, folder: str) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (scripts/test installs redis-tools/redis-server)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.folder,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def encode(*args: Any) -> bytes:
    """One command as a multibulk."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


class Raw:
    """A plain socket speaking RESP; replies as (type, value) trees."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.f = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args: Any) -> tuple:
        self.send(encode(*args))
        return self.reply()

    def pipeline(self, cmds: list) -> list:
        self.send(b"".join(encode(*c) for c in cmds))
        return [self.reply() for _ in cmds]

    def reply(self) -> tuple:
        line = self.f.readline()
        if not line:
            raise ConnectionError("closed")
        t, rest = line[:1].decode(), line[1:-2]
        if t in "+-:,#_(":
            return (t, rest)
        if t in "$=":
            n = int(rest)
            if n < 0:
                return (t, None)
            data = self.f.read(n + 2)
            return (t, data[:-2])
        if t in "*~>%":
            n = int(rest)
            if n < 0:
                return (t, None)
            count = 2 * n if t == "%" else n
            return (t, [self.reply() for _ in range(count)])
        raise ValueError("not RESP: %r" % line)

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection within ``timeout`` (reading what is left)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.f.close()
        self.sock.close()

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
