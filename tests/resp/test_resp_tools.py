"""The Redis command-line tools, unchanged, against Flin: redis-cli and
redis-benchmark (Debian's redis-tools, installed by scripts/test), and
``flin status`` naming the port. A pool of routers shares the one port
(SO_REUSEPORT), and the port outlives the loss of a router."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.cluster import ROOT
from tests.support.faults import router_pids, wait_for
from tests.support.resp import Raw, resp_cluster


def cli(port: int, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_redis_cli(resp):
    _, port = resp
    assert cli(port, "set", "a", "b") == "OK\n"
    assert cli(port, "get", "a") == "b\n"
    assert cli(port, "get", "nothing") == "\n"
    assert cli(port, "incrby", "cli:n", "5") == "5\n"
    assert cli(port, "mget", "a", "nothing") == "b\n\n"
    cli(port, stdin="".join("SET user:%03d %d\n" % (i, i) for i in range(120)))
    cli(port, "set", "other:1", "x")
    scanned = cli(port, "--scan", "--pattern", "user:*").split()
    assert sorted(scanned) == ["user:%03d" % i for i in range(120)]
    info = cli(port, "info")
    assert "redis_version:" in info and "# Keyspace" in info
    assert re.search(r"db0:keys=\d+", info)
    assert cli(port, "hset", "h", "f", "v").startswith("ERR HSET: Flin keeps strings only")
    assert cli(port, "--no-raw", "get", "nothing") == "(nil)\n"
    assert cli(port, "--no-raw", "set", "e", "") == "OK\n"
    assert cli(port, "--no-raw", "get", "e") == '""\n'


def test_redis_cli_interactive_start_up(resp):
    """redis-cli at its prompt asks COMMAND DOCS (refused: it falls back to its
    own hints) and COMMAND; then commands work as typed."""
    _, port = resp
    out = subprocess.run(["redis-cli", "-p", str(port)], input="ping\nset k1 v1\nget k1\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["PONG", "OK", "v1"]


def test_redis_cli_pipe_mass_insert(resp):
    """`redis-cli --pipe` streams commands without waiting for replies (the
    mass-insertion path): backpressure is TCP's, nothing is lost."""
    _, port = resp
    data = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                    % (len(k), k, len(k), k) for k in (b"mass:%06d" % i for i in range(50_000)))
    out = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert b"errors: 0, replies: 50000" in out.stdout, out.stdout
    with Raw(port) as r:
        assert r.call("MGET", "mass:000000", "mass:049999") == (
            "*", [("$", b"mass:000000"), ("$", b"mass:049999")])
    assert len(cli(port, "--scan", "--pattern", "mass:*").split()) == 50_000


def test_redis_benchmark_completes_without_errors(resp):
    _, port = resp
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "ping,set,get,incr,mset",
                          "-n", "20000", "-P", "16", "-q", "--csv"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split(",") for line in out.stdout.strip().splitlines()[1:]]
    tests = {r[0].strip('"'): float(r[1].strip('"')) for r in rows}
    assert set(tests) == {"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"}
    assert all(rps > 0 for rps in tests.values()), tests
    assert "error" not in (out.stdout + out.stderr).lower()
    with Raw(port) as r:
        assert r.call("GET", "counter:__rand_int__")[0] == "$"   # INCR's key, counted up


def test_flin_status_names_the_port(resp):
    c, port = resp
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-m", "flin", "status", "-e", c.endpoint, "--json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(out.stdout)["resp"] == "127.0.0.1:%d" % port
    out = subprocess.run([sys.executable, "-m", "flin", "status", "-e", c.endpoint],
                         capture_output=True, text=True, timeout=60, env=env)
    assert "redis protocol on 127.0.0.1:%d" % port in out.stdout


def test_a_pool_of_routers_shares_one_port(tmp_short):
    c, port = resp_cluster(tmp_short, shards=4, extra=["--routers", "3"])
    try:
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:   # the kernel spreads connections
            with Raw(port) as r:
                info = r.call("INFO", "server")[1].decode()
                seen.add(int(re.search(r"router_id:(\d+)", info).group(1)))
                assert r.call("SET", "pool:%d" % len(seen), "v") == ("+", b"OK")
        assert seen == {0, 1, 2}
        victim = router_pids(c)[1]
        os.kill(victim, signal.SIGKILL)
        # A connection the kernel queued on the dying router's listener is reset (what
        # SO_REUSEPORT does to a closing listener's queue; a Redis client reconnects):
        # once it is closed, every new connection goes to a router still up.
        wait_for(lambda: _dead(victim), 5, "router 1 dead (a zombie or reaped)")
        time.sleep(0.1)                        # the kernel lets go of its listener just after
        for i in range(50):
            with Raw(port) as r:
                assert r.call("GET", "pool:1") == ("$", b"v")
        wait_for(lambda: router_pids(c).get(1) not in (None, victim), 10, "router 1 back")
        seen = set()
        deadline = time.monotonic() + 20
        while 1 not in seen and time.monotonic() < deadline:
            with Raw(port) as r:
                info = r.call("INFO", "server")[1].decode()
                seen.add(int(re.search(r"router_id:(\d+)", info).group(1)))
        assert 1 in seen, "the restarted router listens on the port again"
    finally:
        assert c.stop() == 0


def _dead(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_start_refuses_a_port_in_use(tmp_short):
    import socket
    from tests.support.cluster import make_cluster
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        c = make_cluster(tmp_short, 2, ["--resp", "127.0.0.1:%d" % port])
        with pytest.raises(RuntimeError) as exc:
            c.start()
        assert "cannot listen for the Redis protocol on 127.0.0.1:%d" % port in str(exc.value)
        c.proc = None
    finally:
        holder.close()
