"""How RESP connections are read and answered (``resp/server.py``), each
case from a review that found it wrong: a client that half-closes after its
commands is answered and closed; a pipeline whose replies pass one
request's 80 MiB limit is answered whole; a client that sends its whole
pipeline before reading (redis-py) is served, with BUSY for what passes the
unread-replies bound rather than a deadlock; an EXPIRE past the 64-bit range
is an error, not a dead router."""
from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.support.faults import router_pid
from tests.support.resp import Raw, encode


def _drain(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return got, True
            got += data
    except socket.timeout:
        pass
    return got, False


@pytest.mark.parametrize("payload,want", [
    (b"PING\r\n", b"+PONG\r\n"),
    (encode("SET", "hc:a", "1") + encode("GET", "hc:a"), b"+OK\r\n$1\r\n1\r\n"),
    (b"PING\r\n" * 1000, b"+PONG\r\n" * 1000),
], ids=["inline", "set-get", "1000-pings"])
def test_a_client_that_half_closes_is_answered_then_closed(resp, payload, want):
    """As `printf 'PING\\r\\n' | nc -N host port`: the replies, then the end."""
    _, port = resp
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got, closed = _drain(s, 3.0)
    assert got == want and closed


def test_a_pipeline_past_one_requests_reply_limit_is_answered_whole(resp):
    _, port = resp
    big = b"x" * (1 << 20)
    with Raw(port, timeout=60) as r:
        r.pipeline([["SET", "bigp:%d" % i, big] for i in range(100)])
        got = r.pipeline([["GET", "bigp:%d" % i] for i in range(100)])   # 100 MiB of replies
        wrong = [i for i, g in enumerate(got) if g != ("$", big)]
        assert len(got) == 100 and not wrong, [(got[i][0], got[i][1][:80]) for i in wrong[:3]]
        r.call("DEL", *["bigp:%d" % i for i in range(100)])


def test_a_client_that_sends_everything_before_reading_is_not_deadlocked(resp):
    """redis-py sends a whole pipeline, then reads. 150,000 GETs of 1 KiB are
    ~155 MB of replies: the first 64 MiB are values, the rest BUSY (not run),
    and nothing hangs; a second pipeline on the same connection is served."""
    c, port = resp
    value = b"v" * 1024
    pid = router_pid(c)
    with redis.Redis(port=port, socket_timeout=60) as r:
        r.set("dl:v", value)
        t0 = time.monotonic()
        with r.pipeline(transaction=False) as p:
            for _ in range(150_000):
                p.get("dl:v")
            got = p.execute(raise_on_error=False)
        took = time.monotonic() - t0
        values = sum(1 for g in got if g == value)
        busy = [g for g in got if g != value]
        assert len(got) == 150_000 and values >= 60_000, values
        # each reply is the value or BUSY (not run); once the client reads, what
        # comes after is served again, so the two may alternate
        odd = [g for g in busy
               if not (isinstance(g, redis.ResponseError) and "replies wait unread" in str(g))]
        assert not odd, [repr(g) for g in odd[:3]]
        assert got[:60_000].count(value) == 60_000       # the first 64 MiB: values
        assert took < 30, took
        with r.pipeline(transaction=False) as p:
            for _ in range(1000):
                p.get("dl:v")
            assert p.execute() == [value] * 1000
    assert router_pid(c) == pid


def test_an_expire_past_the_64_bit_range_is_an_error_and_the_router_lives(resp):
    c, port = resp
    pid = router_pid(c)
    with Raw(port) as r:
        assert r.call("SET", "ex64", "v") == ("+", b"OK")
        assert r.call("EXPIRE", "ex64", "-9223372036854775808") == (
            "-", b"ERR invalid expire time in 'expire' command")
        assert r.call("GET", "ex64") == ("$", b"v")
    assert router_pid(c) == pid
