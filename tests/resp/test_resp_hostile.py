"""Hostile and careless RESP clients against a real cluster: oversized
headers, garbage, half-sent commands, inline commands, commands after
QUIT, 10,000 connections at once, too many clients, a client that pipelines
big replies and never reads. After each, the router is the same process
(nothing crashed and was restarted) and another connection is served.

Every socket read has a timeout (``Raw``'s, or an explicit deadline), so no
test can hang.
"""
from __future__ import annotations

import random
import resource
import select
import socket
import time

import pytest

from tests.support.faults import router_pid
from tests.support.resp import Raw, encode, resp_cluster, rss_kib

MIB = 1024


def served(c, port: int, pid: int, key: str = "served", rounds: int = 1) -> None:
    """The router did not restart, and a new connection's PING/SET/GET work, each fast."""
    assert router_pid(c) == pid, "the router restarted:\n" + c.log()
    with Raw(port, timeout=5) as o:
        for i in range(rounds):
            for args, want in [(("PING",), ("+", b"PONG")), (("SET", key, i), ("+", b"OK")),
                               (("GET", key), ("$", b"%d" % i))]:
                t0 = time.monotonic()
                assert o.call(*args) == want
                assert time.monotonic() - t0 < 1.0, args


def started(tmp: str, extra: list | None = None):
    c, port = resp_cluster(tmp, shards=4, extra=extra)
    pid = router_pid(c)
    assert pid is not None
    return c, port, pid


def error_then_closed(r: Raw, within: float = 2.0) -> bytes:
    """The error reply ``r`` gets, after checking the connection is then closed."""
    t0 = time.monotonic()
    r.sock.settimeout(within)
    kind, msg = r.reply()
    assert kind == "-", (kind, msg)
    assert r.closed(within)
    assert time.monotonic() - t0 < within + 0.5
    return msg


# -- oversized headers -----------------------------------------------------------------
@pytest.mark.parametrize("data,before,message", [
    (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n", [], b"invalid bulk length"),  # no payload
    (b"PING\r\n*10000000\r\n", [("+", b"PONG")], b"invalid multibulk length"),  # careful path
    pytest.param(b"*10000000\r\n", [], b"invalid multibulk length"),
    pytest.param(b"*4294967295\r\n", [], b"invalid multibulk length"),
], ids=["bulk-100MB", "count-10M-after-inline", "count-10M", "count-4G"])
def test_an_oversized_header_is_refused_at_once(tmp_short, data, before, message):
    c, port, pid = started(tmp_short)
    try:
        with Raw(port) as other:
            assert other.call("PING") == ("+", b"PONG")
            with Raw(port) as r:
                r.send(data)
                r.sock.settimeout(2)
                assert [r.reply() for _ in before] == before
                assert error_then_closed(r) == b"ERR Protocol error: " + message
            assert other.call("PING") == ("+", b"PONG")          # the same connection, still up
            assert other.call("GET", "k") == ("$", None)
        served(c, port, pid)
    finally:
        assert c.stop() == 0


def test_nested_arrays_are_refused_and_do_not_pile_up(tmp_short):
    """Redis answers a nested array with "expected '$', got '*'" and closes.
    Sent one read at a time (each a whole nested array, 60 KB), they must
    not be held past parse.MAX_COMMAND (80 MiB): 1,500 of them are 90 MB."""
    c, port, pid = started(tmp_short)
    try:
        base = rss_kib(pid)
        with Raw(port, timeout=5) as r:
            r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            r.send(b"*100000\r\n")
            element = b"*1\r\n" + encode(b"x" * 60_000)[4:]
            sent = 0
            try:
                for sent in range(1500):
                    r.send(element)
                    time.sleep(0.001)                # each read by the router on its own
            except OSError:                          # closed on us: refused
                pass
            grown = rss_kib(pid) - base
            r.sock.settimeout(2)
            try:
                first = r.reply()
            except (OSError, ConnectionError) as exc:
                first = exc
            assert first == ("-", b"ERR Protocol error: expected '$', got '*'"), (
                first, sent, grown)
            assert grown < 80 * MIB, "the router holds %d KiB for one connection" % grown
        served(c, port, pid)
    finally:
        assert c.stop() == 0


# -- garbage ---------------------------------------------------------------------------
def _garbage(seed: int) -> bytes:
    rng = random.Random(seed)
    if seed % 2:
        return rng.randbytes(rng.randint(1000, 300_000))          # binary noise
    tokens = [b"*", b"$", b"\r\n", b"\n", b"-1", b"0", b"3", b"99", b"4294967295", b"x",
              b"PING", b"GET", b'"', b"'", b" ", b"\x00", b":", b"+OK"]
    return b"".join(rng.choice(tokens) for _ in range(rng.randint(100, 20_000)))


def test_garbage_is_refused_and_the_connection_closed(tmp_short):
    c, port, pid = started(tmp_short)
    try:
        outcomes = []
        for seed in range(12):
            data = _garbage(seed)
            with Raw(port) as r:
                try:
                    r.send(data)
                except OSError:                    # closed on us while we sent: refused too
                    pass
                r.sock.settimeout(5)
                got = b""
                try:
                    while chunk := r.sock.recv(65536):
                        got += chunk
                except socket.timeout:
                    pytest.fail("seed %d: open 5 s after %d bytes of garbage" % (seed, len(data)))
                except OSError:                    # reset: closed
                    pass
                # what came back are replies, the last a protocol error (or nothing)
                assert not got or got.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1].startswith(
                    b"-ERR Protocol error"), (seed, got[-300:])
                outcomes.append(bool(got))
            assert router_pid(c) == pid, "seed %d restarted the router:\n%s" % (seed, c.log())
        assert any(outcomes)
        served(c, port, pid)
    finally:
        assert c.stop() == 0


# -- half-sent commands and the idle timeout -------------------------------------------
HALF = b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nab"


@pytest.mark.parametrize("timeout", [1, None], ids=["resp-timeout-1", "no-timeout"])
def test_a_half_sent_command_blocks_no_one(tmp_short, timeout):
    """Others are served meanwhile; with --resp-timeout 1 the half-sent
    connection is closed within ~3 s, without it waits for its rest."""
    c, port, pid = started(tmp_short, ["--resp-timeout", str(timeout)] if timeout else [])
    try:
        with Raw(port) as half:
            half.send(HALF)
            t0 = time.monotonic()
            served(c, port, pid, "other", rounds=5)
            if timeout:
                assert half.closed(timeout=4.0) and time.monotonic() - t0 < 3.5
            else:
                assert not half.closed(timeout=2.5)
                half.send(b"cde\r\n")
                half.sock.settimeout(5)
                assert half.reply() == ("+", b"OK")
        with Raw(port) as o:
            assert o.call("GET", "half") == ("$", None if timeout else b"abcde")
        served(c, port, pid)
    finally:
        assert c.stop() == 0


def test_a_command_sent_in_two_writes_split_after_an_argument(tmp_short):
    c, port, pid = started(tmp_short)
    try:
        with Raw(port, timeout=5) as r:
            assert r.call("SET", "k", "v") == ("+", b"OK")
            r.send(b"*2\r\n$3\r\nGET\r\n")
            time.sleep(0.3)                        # read by the router on its own
            r.send(b"$1\r\nk\r\n")
            assert r.reply() == ("$", b"v")
            assert r.call("PING") == ("+", b"PONG")
        served(c, port, pid)
    finally:
        assert c.stop() == 0


# -- inline commands, QUIT -------------------------------------------------------------
def test_inline_commands_as_redis_cli_and_telnet_send_them(tmp_short):
    c, port, pid = started(tmp_short)
    try:
        with Raw(port, timeout=5) as r:
            r.send(b"PING\r\n")
            assert r.reply() == ("+", b"PONG")
            r.send(b'SET a "b c"\r\n')
            assert r.reply() == ("+", b"OK")
            r.send(b"GET a\n")                     # telnet may send a bare \n
            assert r.reply() == ("$", b"b c")
            assert r.call("GET", "a") == ("$", b"b c")
            r.send(b"\r\n\r\nset 'x y' \"\\x41\\x42\"\r\nget 'x y'\r\n")
            assert r.reply() == ("+", b"OK")
            assert r.reply() == ("$", b"AB")
        served(c, port, pid)
    finally:
        assert c.stop() == 0


def test_commands_pipelined_after_quit_are_not_run(tmp_short):
    c, port, pid = started(tmp_short)
    try:
        with Raw(port, timeout=5) as r:
            r.send(encode("SET", "k1", "v") + encode("QUIT") + encode("SET", "k2", "v"))
            assert r.reply() == ("+", b"OK")
            assert r.reply() == ("+", b"OK")
            assert r.closed(3.0)
        with Raw(port, timeout=5) as o:
            assert o.call("GET", "k1") == ("$", b"v")
            assert o.call("EXISTS", "k2") == (":", b"0")
            assert o.call("GET", "k2") == ("$", None)
        served(c, port, pid)
    finally:
        assert c.stop() == 0


# -- many clients ----------------------------------------------------------------------
N_CONNS = 10_000
# What 10,000 idle connections cost the router: a Conn, Parser (a hiredis
# Reader), Session, socket object and dict/epoll entries each, measured at
# about 1.7 KiB a connection (17 MiB). 100 MiB is 10 KiB a connection: room
# to spare, yet a 16 KiB buffer kept per connection would not fit in it.
CONNS_RSS_BOUND_KIB = 100 * MIB


def _raise_nofile(want: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("the hard open-file limit (%d) is below the %d this test needs "
                    "(ulimit -Hn)" % (hard, want))
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return soft, hard


def _connected_clients(port: int) -> int:
    with Raw(port, timeout=5) as o:
        info = o.call("INFO", "clients")[1]
    return int(info.split(b"connected_clients:")[1].split(b"\r\n")[0])


def test_ten_thousand_connections_to_one_router(tmp_short):
    old = _raise_nofile(N_CONNS + 500)
    t_start = time.monotonic()
    c, port, pid = started(tmp_short, ["--max-clients", "20000"])
    socks: dict[int, socket.socket] = {}
    ep = select.epoll()
    try:
        served(c, port, pid, "before")
        base = rss_kib(pid)
        deadline = time.monotonic() + 40
        for _ in range(N_CONNS):
            s = socket.create_connection(("127.0.0.1", port), 10)
            socks[s.fileno()] = s
            s.sendall(encode("PING"))
            s.setblocking(False)
            ep.register(s.fileno(), select.EPOLLIN)
            assert time.monotonic() < deadline, "connecting took too long"
        waiting, got = set(socks), {fd: b"" for fd in socks}
        while waiting and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.5, 1024):
                data = socks[fd].recv(64)
                assert data, "connection %d closed instead of answering" % fd
                got[fd] += data
                if len(got[fd]) >= 7:
                    assert got[fd] == b"+PONG\r\n", got[fd]
                    ep.unregister(fd)
                    waiting.discard(fd)
        assert not waiting, "%d of %d not answered in time" % (len(waiting), N_CONNS)
        grown = rss_kib(pid) - base
        assert grown < CONNS_RSS_BOUND_KIB, "grew %d KiB for %d connections" % (grown, N_CONNS)
        served(c, port, pid, "during")                     # one more, beside the 10,000
        assert _connected_clients(port) == N_CONNS + 1
        for s in socks.values():
            s.close()
        socks.clear()
        while _connected_clients(port) > 1:                # each close is seen
            assert time.monotonic() < deadline, "closed connections still counted"
            time.sleep(0.1)
        served(c, port, pid, "after")
        assert time.monotonic() - t_start < 60
    finally:
        for s in socks.values():
            s.close()
        ep.close()
        assert c.stop() == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_past_max_clients_a_connection_is_refused_and_the_others_served(tmp_short):
    c, port, pid = started(tmp_short, ["--max-clients", "5"])
    conns = []
    try:
        for _ in range(5):
            r = Raw(port, timeout=5)
            conns.append(r)
            assert r.call("PING") == ("+", b"PONG")
        with Raw(port, timeout=5) as sixth:
            assert sixth.reply() == ("-", b"ERR max number of clients reached")
            assert sixth.closed(2.0)
        for i, r in enumerate(conns):
            assert r.call("SET", "m%d" % i, i) == ("+", b"OK")
            assert r.call("GET", "m%d" % i) == ("$", b"%d" % i)
        conns.pop().close()                        # one leaves: a new one is let in
        deadline = time.monotonic() + 5
        while True:
            with Raw(port, timeout=5) as r:
                try:
                    got = r.call("PING")
                except OSError:                    # refused and closed before our PING
                    got = None
                if got == ("+", b"PONG"):
                    break
                assert got in (None, ("-", b"ERR max number of clients reached")), got
            assert time.monotonic() < deadline, "the freed place was not given again"
            time.sleep(0.1)
        assert router_pid(c) == pid
    finally:
        for r in conns:
            r.close()
        assert c.stop() == 0


# -- a client that never reads ---------------------------------------------------------
# The whole pipeline's replies would be 1 GiB; a batch's results are capped
# at protocol.MAX_REPLY (80 MiB; the rest are TooLarge errors), and the
# connection is not read again until that batch's replies are written. Its
# results, their encoded replies and the joined reply are each about one
# cap: 300 MiB leaves room for that and is still well under 1 GiB.
NOT_READ_RSS_BOUND_KIB = 300 * MIB


def test_a_client_that_pipelines_big_replies_and_never_reads(tmp_short):
    c, port, pid = started(tmp_short)
    try:
        with Raw(port, timeout=30) as w:
            assert w.call("SET", "big", b"x" * (1 << 20)) == ("+", b"OK")
            assert len(w.call("GET", "big")[1]) == 1 << 20
        base = rss_kib(pid)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(encode("GET", "big") * 1000)
            peak = base
            t_end = time.monotonic() + 4
            while time.monotonic() < t_end:
                peak = max(peak, rss_kib(pid))
                served(c, port, pid, "other")
                time.sleep(0.1)
            assert peak - base < NOT_READ_RSS_BOUND_KIB, "the router grew %d KiB" % (peak - base)
            served(c, port, pid)
        finally:
            s.close()
        deadline = time.monotonic() + 10           # its replies are let go once it has gone
        while rss_kib(pid) - base > 64 * MIB:
            assert time.monotonic() < deadline, "still %d KiB more after the client left" % (
                rss_kib(pid) - base)
            time.sleep(0.2)
        served(c, port, pid)
    finally:
        assert c.stop() == 0
