"""The bombs of RELIABILITY.md cases 13 and 14, one test each: huge length
headers (in msgpack and in ZMTP itself), a frame over the cap, deep nesting,
bad UTF-8, ext types, wrong frame counts, oversized batches.

Each bomb is sent many times, pipelined; every copy must get a BadRequest
(or TooLarge) reply, the router and workers must be the same processes with
about the same memory, and the next ordinary request must work."""
from __future__ import annotations

import time

import msgpack
import pytest

from flin import errors, protocol
from flin.protocol import DEL, GET, MAX_ITEMS, MAX_KEY, MAX_SCAN_LIMIT, MGET, PING, SCAN, SET

from tests.support.hostile import (
    RawPeer, Tally, assert_memory_bounded, closed_by_peer, cluster_rss, zmtp_connect, zmtp_frame,
)

COPIES = 200                       # each bomb, pipelined
BAD = {errors.BadRequest.code, errors.TooLarge.code}


@pytest.fixture(scope="module")
def raw(shared_cluster):
    with RawPeer(shared_cluster.endpoint, window=500) as peer:
        yield peer


@pytest.fixture
def watch(shared_cluster, client):
    """Before: the processes and their memory. After: same processes, memory
    bounded, and a fresh client's request works."""
    client.set(b"bomb:probe", b"before")
    before = cluster_rss(shared_cluster)
    yield
    assert_memory_bounded(before, cluster_rss(shared_cluster), bound_kib=32 * 1024)
    with shared_cluster.client() as fresh:
        assert fresh.get(b"bomb:probe") == b"before"
        fresh.set(b"bomb:probe", b"after")
        assert fresh.ping() is True


def assert_all_refused(raw: RawPeer, frames: list, copies: int = COPIES) -> Tally:
    """Send each bomb ``copies`` times; every reply must be a BadRequest."""
    tally = raw.blast([f for f in frames for _ in range(copies)])
    assert tally.replies == tally.expected and tally.sent == len(frames) * copies
    assert tally.errors == tally.sent, tally       # not one of them did anything
    assert set(tally.codes) <= BAD, tally.codes
    assert raw.ask(protocol.encode(7, [[PING]])) == (7, [True])
    return tally


def envelope(cmd_bytes: bytes, rid: int = 1) -> bytes:
    """``[rid, [<cmd_bytes>]]`` with the command's bytes spliced in raw."""
    return b"\x92" + msgpack.packb(rid) + b"\x91" + cmd_bytes


def get_with(key_bytes: bytes) -> bytes:
    """``[rid, [[GET, <key_bytes>]]]``."""
    return envelope(b"\x92" + msgpack.packb(GET) + key_bytes)


# -- case 14: huge length headers ----------------------------------------------------------
HUGE_HEADERS = {
    "array32 message": b"\xdd\xff\xff\xff\xff",
    "map32 message": b"\xdf\xff\xff\xff\xff",
    "array32 of commands": b"\x92\x01\xdd\xff\xff\xff\xff",
    "array16 of commands, none sent": b"\x92\x01\xdc\xff\xff",
    "array32 command": envelope(b"\xdd\x7f\xff\xff\xff"),
    "bin32 key": get_with(b"\xc6\xff\xff\xff\xff" + b"k"),
    "bin32 key past the cap": get_with(b"\xc6" + (protocol.MAX_MESSAGE + 1).to_bytes(4, "big")),
    "str32 key": get_with(b"\xdb\xff\xff\xff\xff"),
    "ext32": get_with(b"\xc9\xff\xff\xff\xff\x05"),
    "array of 300000 keys announced": envelope(b"\x92\x05\xdd\x00\x04\x93\xe0"),
}


@pytest.mark.parametrize("name", list(HUGE_HEADERS))
def test_huge_length_header(raw, watch, name):
    assert_all_refused(raw, [HUGE_HEADERS[name]])


def test_huge_frame_announced_in_zmtp_is_dropped_unread(shared_cluster, client, watch):
    """Below msgpack: a peer announces a 1 TiB frame. libzmq (MAXMSGSIZE) must
    close that connection before allocating anything; the others go on."""
    for size in (1 << 40, protocol.MAX_MESSAGE + 1):
        s = zmtp_connect(shared_cluster.endpoint)
        try:
            s.sendall(b"\x02" + size.to_bytes(8, "big") + b"x" * 1000)
            assert closed_by_peer(s), "the router kept a peer that announced %d bytes" % size
        finally:
            s.close()
    s = zmtp_connect(shared_cluster.endpoint)  # a well-formed frame on the same path is served
    try:
        s.sendall(zmtp_frame(protocol.encode(5, [[PING]])))
        s.settimeout(5)
        reply = s.recv(64)
        assert reply.endswith(protocol.encode(5, [True])), reply
    finally:
        s.close()
    assert client.ping() is True


def test_frame_over_the_cap_drops_that_peer_only(shared_cluster, client, watch):
    """A real DEALER sends MAX_MESSAGE + 1 bytes: the router drops it unread,
    the sender's poll times out (it does not hang), the flin client refuses
    to send such a frame, and other clients are served meanwhile."""
    with RawPeer(shared_cluster.endpoint) as big:
        big.sock.send(b"\x00" * (protocol.MAX_MESSAGE + 1))
        t0 = time.monotonic()
        assert not big.sock.poll(1500)
        assert time.monotonic() - t0 < 3
        assert client.ping() is True
    with shared_cluster.client(timeout=2) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.TooLarge):
            c.execute([[SET, b"bomb:big", b"\x00" * protocol.MAX_MESSAGE, None, 0]])
        assert time.monotonic() - t0 < 3
        assert c.ping() is True


# -- case 14: nesting ------------------------------------------------------------------------
DEEP = {
    "2000-deep message": b"\x91" * 2000 + b"\xc0",
    "2000-deep command list": b"\x92\x01" + b"\x91" * 2000 + b"\xc0",
    "2000-deep key": get_with(b"\x91" * 2000 + b"\xc0"),
    "1000-deep key (decodes; repr would overflow)": get_with(b"\x91" * 1000 + b"\xc0"),
    "1000-deep value": envelope(b"\x95\x02\xc4\x01k" + b"\x91" * 1000 + b"\xc0\xc0\x00"),
    "1000-deep flags": envelope(b"\x95\x02\xc4\x01k\xc4\x01v\xc0" + b"\x91" * 1000 + b"\xc0"),
    "1000-deep request id": b"\x92" + b"\x91" * 1000 + b"\x01" + b"\x91\x91\x00",
    "1000-deep ping argument": envelope(b"\x92\x00" + b"\x91" * 1000 + b"\xc0"),
}


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_nesting(raw, watch, name):
    if "ping" in name:  # PING takes no arguments and ignores extra ones: answered, not refused
        assert raw.ask(DEEP[name]) == (1, [True])
        return
    assert_all_refused(raw, [DEEP[name]])


# -- case 14: bad UTF-8 ---------------------------------------------------------------------
BAD_UTF8 = {
    "invalid start byte": b"\xa2\xff\xfe",
    "overlong slash": b"\xa2\xc0\xaf",
    "lone surrogate": b"\xa3\xed\xa0\x80",
    "truncated sequence": b"\xa1\xe2",
    "past U+10FFFF": b"\xa4\xf4\x90\x80\x80",
}


@pytest.mark.parametrize("name", list(BAD_UTF8))
def test_bad_utf8(raw, watch, name):
    s = BAD_UTF8[name]
    assert_all_refused(raw, [
        get_with(s),                                   # as a key
        b"\x92" + s + b"\x91\x91\x00",                 # as the request id
        b"\x92\x01" + s,                               # as the command list
        envelope(b"\x95\x02\xc4\x01k" + s + b"\xc0\x00"),  # as a value
    ])


# -- case 14: ext types ---------------------------------------------------------------------
EXT = {
    "flin's own error ext, sent by a client": msgpack.packb(
        [1, [[GET, msgpack.ExtType(1, b"\x01forged")]]]),
    "error ext as the whole command": msgpack.packb([1, [msgpack.ExtType(1, b"\x01x")]]),
    "error ext as the request id": msgpack.packb([msgpack.ExtType(1, b"\x01x"), [[PING]]]),
    "timestamp": msgpack.packb([1, [[SET, b"bomb:k", msgpack.Timestamp(1, 0), None, 0]]]),
    "empty ext8": get_with(b"\xc7\x00\x05"),
    "fixext16": get_with(b"\xd8\x05" + b"\x00" * 16),
    "ext as the command list": msgpack.packb([1, msgpack.ExtType(7, b"")]),
}


@pytest.mark.parametrize("name", list(EXT))
def test_ext_type(raw, client, watch, name):
    client.set(b"bomb:k", b"untouched")
    assert_all_refused(raw, [EXT[name]])
    assert client.get(b"bomb:k") == b"untouched"


# -- case 14: wrong frame counts ----------------------------------------------------------------
FRAMES = {
    "one empty frame": [b""],
    "two good requests in two frames": [protocol.encode(1, [[PING]]), protocol.encode(2, [[PING]])],
    "an empty delimiter first (REQ style)": [b"", protocol.encode(1, [[PING]])],
    "three frames": [b"a", b"b", b"c"],
    "ten empty frames": [b""] * 10,
    "a write split over two frames": [protocol.encode(1, [[SET, b"bomb:split", b"v", None, 0]]), b""],
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_wrong_frame_count(raw, client, watch, name):
    assert_all_refused(raw, [FRAMES[name]])
    assert client.get(b"bomb:split") is None


# -- sizes checked before any work ---------------------------------------------------------------
OVERSIZED = {
    "too many commands": msgpack.packb([1, [[PING]] * (MAX_ITEMS + 1)]),
    "too many MGET keys": msgpack.packb([1, [[MGET, [b"k"] * (MAX_ITEMS + 1)]]]),
    "too many DEL keys": msgpack.packb([1, [[DEL, [b"k"] * (MAX_ITEMS + 1)]]]),
    "key past 64 KiB": msgpack.packb([1, [[GET, b"k" * (MAX_KEY + 1)]]]),
    "scan limit past the cap": msgpack.packb([1, [[SCAN, b"", None, MAX_SCAN_LIMIT + 1, False]]]),
    "array past max_array_len": b"\x92\x01\xdd" + (2 * MAX_ITEMS + 1).to_bytes(4, "big")
                                + b"\x91\x00" * (2 * MAX_ITEMS + 1),
}


@pytest.mark.parametrize("name", list(OVERSIZED))
def test_oversized(raw, watch, name):
    assert_all_refused(raw, [OVERSIZED[name]], copies=5)
