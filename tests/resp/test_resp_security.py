"""The RESP port's security, as SECURITY.md states it: loopback unless AUTH
and TLS are both on (or --insecure); AUTH as Redis's (NOAUTH, WRONGPASS,
HELLO ... AUTH); TLS through the ``ssl`` module, with redis-py and redis-cli."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from flin.config import Config
from flin.supervisor.bindcheck import check_resp
from tests.support.cluster import ROOT
from tests.support.faults import router_pid
from tests.support.resp import Raw, resp_cluster


def _cpu_s(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(args: list, tmp: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flin", "start", "--data", os.path.join(tmp, "d"),
                           "--shards", "1", "--routers", "1",
                           "--bind", "ipc://" + os.path.join(tmp, "s"), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def secrets(tmp_short):
    pw = os.path.join(tmp_short, "pw")
    with open(pw, "w") as f:
        f.write("s3cret-pass\n")
    os.chmod(pw, 0o600)
    cert, key = os.path.join(tmp_short, "cert.pem"), os.path.join(tmp_short, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return pw, cert, key


def test_a_public_resp_port_needs_auth_and_tls(tmp_short, secrets):
    pw, cert, key = secrets
    out = _start(["--resp", "0.0.0.0:7399"], tmp_short)
    assert out.returncode == 2
    assert "refusing the Redis protocol on 0.0.0.0:7399" in out.stderr
    assert "authenticated or encrypted" in out.stderr
    out = _start(["--resp", "0.0.0.0:7399", "--resp-password-file", pw], tmp_short)
    assert out.returncode == 2 and "would not be encrypted" in out.stderr
    public = Config(resp="0.0.0.0:7399", resp_password_file=pw)
    with pytest.raises(ValueError, match="encrypted"):
        check_resp(public)
    public.resp_tls_cert, public.resp_tls_key = cert, key
    assert check_resp(public) == "auth+tls"
    assert check_resp(Config(resp="0.0.0.0:7399", insecure=True)) == "insecure"
    assert check_resp(Config(resp="127.0.0.1:7399")) == "local"
    out = _start(["--resp", "nonsense"], tmp_short)
    assert out.returncode == 2 and "a RESP address is HOST:PORT" in out.stderr


def test_auth(tmp_short, secrets):
    pw = secrets[0]
    c, port = resp_cluster(tmp_short, shards=2, extra=["--resp-password-file", pw])
    try:
        with Raw(port) as raw:
            assert raw.call("GET", "a") == ("-", b"NOAUTH Authentication required.")
            assert raw.call("SET", "a", "1") == ("-", b"NOAUTH Authentication required.")
            assert raw.call("AUTH", "wrong") == (
                "-", b"WRONGPASS invalid username-password pair or user is disabled.")
            assert raw.call("AUTH", "someone", "s3cret-pass")[0] == "-"
            assert raw.call("AUTH", "s3cret-pass") == ("+", b"OK")
            assert raw.call("SET", "a", "1") == ("+", b"OK")
        with Raw(port) as raw:
            assert raw.call("HELLO", "3", "AUTH", "default", "s3cret-pass")[0] == "%"
            assert raw.call("GET", "a") == ("$", b"1")
        for header, why in ((b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$67108864\r\n", b"bulk"),
                            (b"*11\r\n", b"multibulk")):
            with Raw(port) as raw:               # before AUTH: Redis's limits, nothing buffered
                raw.send(header)
                assert raw.reply() == ("-", b"ERR Protocol error: unauthenticated %s length" % why)
                assert raw.closed(5)
        with Raw(port) as raw:                   # after AUTH: the full limits
            assert raw.call("AUTH", "s3cret-pass") == ("+", b"OK")
            assert raw.call("SET", "big", b"x" * (1 << 20)) == ("+", b"OK")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=10).get("a")
        with redis.Redis(port=port, password="s3cret-pass", socket_timeout=10) as r:
            assert r.get("a") == b"1"
    finally:
        assert c.stop() == 0


def test_tls(tmp_short, secrets):
    pw, cert, key = secrets
    c, port = resp_cluster(tmp_short, shards=2, extra=[
        "--resp-password-file", pw, "--resp-tls-cert", cert, "--resp-tls-key", key])
    try:
        with redis.Redis(port=port, password="s3cret-pass", ssl=True, ssl_cert_reqs="none",
                         socket_timeout=10) as r:
            assert r.set("t", "over tls") is True and r.get("t") == b"over tls"
            with r.pipeline(transaction=False) as p:
                for i in range(2000):
                    p.set("t:%d" % i, "x" * 1000)
                p.mget(["t:%d" % i for i in range(2000)])
                got = p.execute()
            assert got[-1] == [b"x" * 1000] * 2000
        with Raw(port) as raw:                     # plain text on a TLS port: dropped, server up
            raw.send(b"*1\r\n$4\r\nPING\r\n")
            assert raw.closed(10)
        pid = router_pid(c)
        with Raw(port) as raw:                     # a handshake left half done costs no CPU
            raw.send(b"\x16\x03\x01")
            before = _cpu_s(pid)
            time.sleep(1.0)
            spent = _cpu_s(pid) - before
        assert spent < 0.2, "the router spun %.2fs of CPU in 1s on a stalled handshake" % spent
        out = subprocess.run(["redis-cli", "-p", str(port), "--tls", "--insecure", "-a",
                              "s3cret-pass", "--no-auth-warning", "get", "t"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout == "over tls\n", out.stderr
    finally:
        assert c.stop() == 0
