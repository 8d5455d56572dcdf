"""Many hosts on one machine, for real: an etcd server on free loopback ports
in a temporary folder (Debian's ``etcd-server``, which ``scripts/test``
installs), and Flin nodes as ``flin start --etcd ... --node NAME`` bound to
127.0.0.2, 127.0.0.3, ... (all of 127/8 is loopback on Linux), each with its
own data folder; or in a network namespace where a test needs a partition
(``Netns``). Every process is stopped, and checked gone, at the end."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import flin
from flin.supervisor.processes import alive

from .cluster import ROOT, Supervised, kill_tree


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(host: str, n: int) -> int:
    """The first of ``n`` consecutive free ports on ``host``."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no %d consecutive free ports on %s" % (n, host))


def have_etcd() -> bool:
    return shutil.which("etcd") is not None


class Etcd:
    """One etcd member on ``host``, its data in ``folder``."""

    def __init__(self, folder: str, host: str = "127.0.0.1", extra_hosts: tuple = (),
                 extra_args: tuple = (), tls: tuple[str, str] | None = None) -> None:
        self.folder, self.host, self.extra_args, self.tls = folder, host, extra_args, tls
        self.scheme = "https" if tls else "http"
        self.port, self.peer = free_port(host), free_port(host)
        self.hosts = (host, *extra_hosts)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    def start(self) -> "Etcd":
        clients = ",".join("%s://%s:%d" % (self.scheme, h, self.port) for h in self.hosts)
        tls = ["--cert-file", self.tls[0], "--key-file", self.tls[1]] if self.tls else []
        peer = "http://%s:%d" % (self.host, self.peer)
        log = open(os.path.join(self.folder, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", os.path.join(self.folder, "etcd"),
             "--listen-client-urls", clients, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "t=" + peer, "--log-level", "error", *tls, *self.extra_args],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        import ssl
        import urllib.request
        ctx = ssl.create_default_context(cafile=self.tls[0]) if self.tls else None
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=0.5, context=ctx).read()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("etcd exited: see %s" % self.folder)
                time.sleep(0.1)
        raise RuntimeError("etcd did not start in 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@dataclass
class Node(Supervised):
    """One node: ``flin start --etcd`` in a subprocess (maybe inside a netns)."""

    name: str
    host: str
    data: str
    etcd: str
    cluster: str
    extra: list = field(default_factory=list)
    netns: str | None = None
    proc: subprocess.Popen | None = None
    pids: set = field(default_factory=set)
    log_path: str = ""
    env: dict = field(default_factory=dict)
    port: int = 0            # the client port (free ones, picked once: a restart keeps them)
    backend_port: int = 0
    repl_port: int = 0       # the first of 16 (shard s's copy: +s)

    def __post_init__(self) -> None:
        if not self.netns:
            self.port, self.backend_port = free_port(self.host), free_port(self.host)
            self.repl_port = free_ports(self.host, 16)
        else:
            self.port, self.backend_port, self.repl_port = 7700, 7800, 7900   # a namespace of its own

    @property
    def endpoint(self) -> str:
        return "tcp://%s:%d" % (self.host, self.port)

    def args(self) -> list[str]:
        return ["--etcd", self.etcd, "--cluster", self.cluster]

    def start(self, timeout: float = 30.0, expect_ready: bool = True) -> "Node":
        self.log_path = os.path.join(os.path.dirname(self.data),
                                     "%s-%d.log" % (self.name, time.monotonic_ns()))
        log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "flin", "start", "--data", self.data, *self.args(),
               "--node", self.name, "--advertise", self.host, "--routers", "1",
               "--bind", self.endpoint, "--backend-port", str(self.backend_port),
               "--repl-port", str(self.repl_port), *self.extra]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                                     env={**os.environ, **self.env})
        if not expect_ready:
            return self
        self.await_ready("node %s" % self.name, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL the supervisor and every child at once: the host died."""
        pids = kill_tree(self.proc)
        self.proc = None
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)


def flin_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flin", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


class Hosts:
    """An etcd and the nodes of one cluster, in ``folder``."""

    def __init__(self, folder: str, cluster: str = "t", etcd_hosts: tuple = ()) -> None:
        self.folder, self.cluster = folder, cluster
        self.etcd = Etcd(folder, extra_hosts=etcd_hosts).start()
        self.nodes: dict[str, Node] = {}

    def etcd_args(self) -> list[str]:
        return ["--etcd", self.etcd.url, "--cluster", self.cluster]

    def create(self, shards: int, nodes: list[str] | None = None,
               extra: tuple = ()) -> subprocess.CompletedProcess:
        args = ["cluster", "create", *self.etcd_args(), "--shards", str(shards), *extra]
        if nodes:
            args += ["--nodes", ",".join(nodes)]
        got = flin_cli(*args)
        assert got.returncode == 0, got.stderr
        return got

    def node(self, name: str, host: str, extra: list | None = None, netns: str | None = None,
             env: dict | None = None) -> Node:
        n = Node(name, host, os.path.join(self.folder, name), self.etcd.url, self.cluster,
                 extra or [], netns, env=env or {})
        self.nodes[name] = n
        return n

    def status(self) -> dict:
        import json
        got = flin_cli("cluster", "status", *self.etcd_args(), "--json")
        assert got.returncode in (0, 4), got.stderr
        return json.loads(got.stdout)

    def close(self) -> None:
        try:
            for n in self.nodes.values():
                if n.proc is not None:
                    n.stop()
        finally:
            self.etcd.stop()


class Netns:
    """A network namespace joined to the host by a veth pair: the host side
    ``10.N.0.1``, the namespace side ``10.N.0.2``. ``cut()`` takes the host
    side down (a partition, both ways); ``heal()`` brings it back."""

    def __init__(self, name: str, subnet: int = 77) -> None:
        self.name = name
        self.host_if, self.ns_if = "vh%s" % name[-6:], "vn%s" % name[-6:]
        self.host_ip, self.ns_ip = "10.%d.0.1" % subnet, "10.%d.0.2" % subnet

    @staticmethod
    def possible() -> bool:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            return False
        probe = "flinprobe%d" % os.getpid()
        ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return ok

    def _ip(self, *args: str, ns: bool = False) -> None:
        cmd = (["ip", "netns", "exec", self.name, "ip"] if ns else ["ip"]) + list(args)
        subprocess.run(cmd, check=True, capture_output=True)

    def create(self) -> "Netns":
        self.destroy()
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", self.host_ip + "/24", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("addr", "add", self.ns_ip + "/24", "dev", self.ns_if, ns=True)
        self._ip("link", "set", self.ns_if, "up", ns=True)
        self._ip("link", "set", "lo", "up", ns=True)
        return self

    def cut(self) -> None:
        self._ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def set_ok(c: flin.Client, key: str) -> bool:
    """Whether one SET of ``key`` is acknowledged now."""
    try:
        c.set(key, "ok")
        return True
    except flin.errors.FlinError:
        return False


def writer(endpoint: str, keys: list[str], seconds: float, out: str) -> None:
    """SET ``keys`` round robin for ``seconds``; record each acknowledgement's
    CLOCK_MONOTONIC time (the same clock in every namespace of the machine),
    each refusal's, and whether reads kept being answered."""
    import json
    from flin import errors
    c = flin.Client(endpoint, timeout=1.0, retries=0, discover=False)
    acks, refused, reads, why = [], [], 0, {}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        key = keys[i % len(keys)]
        try:
            c.set(key, "v%d" % i)
            acks.append(time.monotonic())
        except errors.FlinError as exc:
            refused.append(time.monotonic())
            why[type(exc).__name__ + ": " + str(exc)[:80]] = 1
            try:
                c.get(key)
                reads += 1
            except errors.FlinError:
                pass
            time.sleep(0.02)
        time.sleep(0.005)
    c.close()
    with open(out, "w") as f:
        json.dump({"acks": acks, "refused": refused, "reads_while_refused": reads,
                   "why": sorted(why)}, f)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], sys.argv[5:], float(sys.argv[3]), sys.argv[4])


@contextlib.contextmanager
def netns_hosts(folder: str, name: str):
    """A network namespace and ``Hosts`` whose etcd listens on its host side
    (reachable from inside), with CURVE keys for the nodes (not loopback):
    yields ``(hosts, ns, extra)``, ``extra`` the nodes' key options; all torn
    down at the end."""
    ns = Netns("%s%d" % (name, os.getpid() % 100000)).create()
    keys = os.path.join(folder, "keys")
    assert flin_cli("keygen", keys, "--server", "router", "--client", "worker").returncode == 0
    hosts = None
    try:
        hosts = Hosts(folder)
        hosts.etcd.stop()                                 # again, reachable from the namespace
        hosts.etcd = Etcd(folder, host=ns.host_ip).start()
        yield hosts, ns, ["--backend-keys", keys, "--insecure"]
    finally:
        try:
            if hosts is not None:
                hosts.close()
        finally:
            ns.destroy()

