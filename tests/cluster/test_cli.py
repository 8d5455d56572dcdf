"""Each CLI command through a real ``python -m flin`` subprocess against a
running cluster, with its output and exit code (0 ok, 1 not found,
2 usage, 3 cannot reach the cluster, 4 a server error)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import zmq

from tests.support.cluster import ROOT

OK, NOT_FOUND, USAGE, UNREACHABLE, SERVER = 0, 1, 2, 3, 4


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIN_")}
    env["PYTHONPATH"] = ROOT
    return env


def flin(*args: str, endpoint: str | None = None, timeout: float | None = None,
         check_rc: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flin", *args]
    if endpoint is not None:
        cmd += ["--endpoint", endpoint]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    p = subprocess.run(cmd, capture_output=True, cwd=ROOT, env=_env(), timeout=60)
    if check_rc is not None:
        assert p.returncode == check_rc, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def ep(shared_cluster):
    return shared_cluster.endpoint


def run(ep, *args, rc=OK):
    return flin(*args, endpoint=ep, check_rc=rc)


def test_set_then_get(ep, client):
    assert run(ep, "set", "cli:a", "hello world").stdout == b"OK\n"
    assert client.get(b"cli:a") == b"hello world"
    assert run(ep, "get", "cli:a").stdout == b"hello world\n"


def test_get_missing_exits_1(ep):
    p = run(ep, "get", "cli:missing", rc=NOT_FOUND)
    assert p.stdout == b""
    assert b"not found" in p.stderr


def test_get_empty_value_is_found(ep, client):
    client.set(b"cli:empty", b"")
    assert run(ep, "get", "cli:empty").stdout == b"\n"


def test_get_binary_value_raw(ep, client):
    client.set(b"cli:bin", b"\x00\xff\xfe")
    assert run(ep, "get", "cli:bin").stdout == b"\x00\xff\xfe\n"


def test_set_utf8(ep, client):
    run(ep, "set", "cli:clé", "välue")
    assert client.get("cli:clé".encode()) == "välue".encode()


def test_set_ttl(ep, client):
    run(ep, "set", "--ttl", "100", "cli:ttl", "v")
    assert 98 < client.ttl(b"cli:ttl") <= 100


def test_set_nx_xx(ep, client):
    client.set(b"cli:nx", b"old")
    assert run(ep, "set", "--nx", "cli:nx", "new").stdout == b"not set\n"
    assert client.get(b"cli:nx") == b"old"
    assert run(ep, "set", "--xx", "cli:nx", "new").stdout == b"OK\n"
    assert client.get(b"cli:nx") == b"new"
    assert run(ep, "set", "--xx", "cli:xx-missing", "v").stdout == b"not set\n"
    assert client.get(b"cli:xx-missing") is None
    assert run(ep, "set", "--nx", "cli:nx-missing", "v").stdout == b"OK\n"
    assert client.get(b"cli:nx-missing") == b"v"


def test_del(ep, client):
    client.mset({b"cli:d1": b"1", b"cli:d2": b"2"})
    assert run(ep, "del", "cli:d1", "cli:d2", "cli:d-missing").stdout == b"2\n"
    assert client.mget([b"cli:d1", b"cli:d2"]) == [None, None]
    assert run(ep, "del", "cli:d1").stdout == b"0\n"


def test_exists(ep, client):
    client.set(b"cli:ex", b"")
    assert run(ep, "exists", "cli:ex").stdout == b"1\n"
    assert run(ep, "exists", "cli:ex-missing").stdout == b"0\n"


def test_mget(ep, client):
    client.mset({b"cli:m1": b"one", b"cli:m3": b"three"})
    assert run(ep, "mget", "cli:m1", "cli:m2", "cli:m3").stdout == b"one\n(nil)\nthree\n"


def test_mset(ep, client):
    assert run(ep, "mset", "cli:ms1", "a", "cli:ms2", "b").stdout == b"OK\n"
    assert client.mget([b"cli:ms1", b"cli:ms2"]) == [b"a", b"b"]
    run(ep, "mset", "--ttl", "50", "cli:ms3", "c")
    assert 48 < client.ttl(b"cli:ms3") <= 50


def test_incr_decr(ep, client):
    assert run(ep, "incr", "cli:n").stdout == b"1\n"
    assert run(ep, "incr", "cli:n", "41").stdout == b"42\n"
    assert run(ep, "decr", "cli:n").stdout == b"41\n"
    assert run(ep, "decr", "cli:n", "50").stdout == b"-9\n"
    assert client.get(b"cli:n") == b"-9"


def test_incr_not_an_integer_is_a_server_error(ep, client):
    client.set(b"cli:txt", b"abc")
    p = run(ep, "incr", "cli:txt", rc=SERVER)
    assert b"NotAnInteger" in p.stderr
    assert client.get(b"cli:txt") == b"abc"


def test_expire_ttl_persist(ep, client):
    client.set(b"cli:e", b"v")
    assert float(run(ep, "ttl", "cli:e").stdout) == -1
    assert run(ep, "expire", "cli:e", "100").stdout == b"1\n"
    assert 98 < float(run(ep, "ttl", "cli:e").stdout) <= 100
    assert run(ep, "persist", "cli:e").stdout == b"1\n"
    assert run(ep, "persist", "cli:e").stdout == b"0\n"
    assert float(run(ep, "ttl", "cli:e").stdout) == -1
    assert float(run(ep, "ttl", "cli:e-missing").stdout) == -2
    assert run(ep, "expire", "cli:e-missing", "10").stdout == b"0\n"
    assert run(ep, "expire", "cli:e", "0").stdout == b"1\n"
    assert client.get(b"cli:e") is None


def test_scan(ep, client):
    keys = [b"cli:s:%03d" % i for i in range(30)]
    client.mset({k: b"v" + k[-3:] for k in reversed(keys)})
    client.set(b"cli:t", b"outside")
    assert run(ep, "scan", "cli:s:").stdout == b"".join(k + b"\n" for k in keys)
    assert run(ep, "scan", "cli:s:", "--page", "7").stdout.splitlines() == keys
    assert run(ep, "scan", "cli:s:", "--limit", "4").stdout.splitlines() == keys[:4]
    assert run(ep, "scan", "cli:s:", "--values", "--limit", "2").stdout == \
        b"cli:s:000\tv000\ncli:s:001\tv001\n"
    assert run(ep, "scan", "cli:nothing").stdout == b""


def test_status_json(ep, shared_cluster):
    st = json.loads(run(ep, "status", "--json").stdout)
    pids = shared_cluster.child_pids()
    assert st["router"]["pid"] in pids
    assert [s["id"] for s in st["shards"]] == list(range(shared_cluster.shards))
    for s in st["shards"]:
        assert s["alive"] is True
        assert s["pid"] in pids


def test_status_text(ep, shared_cluster):
    out = run(ep, "status").stdout.decode()
    assert "%d/%d" % (shared_cluster.shards, shared_cluster.shards) in out
    assert out.count("alive") >= shared_cluster.shards


@pytest.mark.parametrize("args", [
    [],                                   # no command
    ["frobnicate"],                       # unknown command
    ["get"],                              # missing argument
    ["get", "a", "b"],                    # extra argument
    ["set", "onlykey"],
    ["set", "--nx", "--xx", "k", "v"],
    ["set", "--ttl", "0", "k", "v"],
    ["set", "--ttl", "soon", "k", "v"],
    ["mset", "k1", "v1", "k2"],           # odd pairs
    ["incr", "k", "abc"],
    ["expire", "k", "never"],
    ["scan", "p", "--limit", "0"],
    ["del"],
    ["status", "--bogus"],
    ["start", "--shards", "0"],
])
def test_usage_errors_exit_2(ep, client, args):
    p = flin(*args, endpoint=ep if args and args[0] not in ("frobnicate", "start") else None)
    assert p.returncode == USAGE, (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr  # says why
    assert client.get(b"k") is None and client.get(b"k1") is None  # nothing was written


def test_help_exits_0():
    p = flin("--help", check_rc=OK)
    for cmd in (b"start", b"stop", b"status", b"get", b"set", b"del", b"exists", b"mget",
                b"mset", b"incr", b"decr", b"expire", b"ttl", b"persist", b"scan"):
        assert cmd in p.stdout


UNREACHABLE_CMDS = [
    ["get", "k"], ["set", "k", "v"], ["del", "k"], ["exists", "k"], ["mget", "k"],
    ["mset", "k", "v"], ["incr", "k"], ["decr", "k"], ["expire", "k", "1"], ["ttl", "k"],
    ["persist", "k"], ["scan", "k"], ["status"], ["status", "--json"],
]


def _run_all(cmds: list, endpoint: str) -> list:
    procs = [subprocess.Popen([sys.executable, "-m", "flin", *c, "--endpoint", endpoint,
                               "--timeout", "1"], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    return [(p.communicate(timeout=60), p.returncode) for p in procs]


def test_nothing_listening_exits_3():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        endpoint = "ipc://" + os.path.join(d, "nobody.sock")
        for cmd, ((out, err), rc) in zip(UNREACHABLE_CMDS, _run_all(UNREACHABLE_CMDS, endpoint)):
            assert rc == UNREACHABLE, (cmd, rc, out, err)
            assert b"cannot reach" in err, (cmd, err)


def test_router_that_never_answers_exits_3():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        endpoint = "ipc://" + os.path.join(d, "mute.sock")
        ctx = zmq.Context()
        mute = ctx.socket(zmq.ROUTER)
        mute.bind(endpoint)
        try:
            cmds = [["get", "k"], ["set", "k", "v"], ["status"]]
            for cmd, ((out, err), rc) in zip(cmds, _run_all(cmds, endpoint)):
                assert rc == UNREACHABLE, (cmd, rc, out, err)
        finally:
            mute.close(0)
            ctx.term()


def test_stop_without_a_cluster_exits_3():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        p = flin("stop", "--data", d, "--wait", "1")
        assert p.returncode == UNREACHABLE
        assert b"no cluster" in p.stderr


def test_start_and_stop_commands(tmp_short):
    """flin start in the foreground, flin stop --data from another process."""
    data = os.path.join(tmp_short, "data")
    endpoint = "ipc://" + os.path.join(tmp_short, "s.sock")
    proc = subprocess.Popen([sys.executable, "-m", "flin", "start", "--data", data,
                             "--shards", "3", "--bind", endpoint], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        assert b"ready" in line and b"3 shards" in line
        flin("set", "k", "v", endpoint=endpoint, check_rc=OK)
        assert flin("get", "k", endpoint=endpoint, check_rc=OK).stdout == b"v\n"
        p = flin("stop", "--data", data, check_rc=OK)
        assert b"stopped" in p.stdout
        assert proc.wait(30) == 0
        flin("get", "k", endpoint=endpoint, timeout=1, check_rc=UNREACHABLE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
