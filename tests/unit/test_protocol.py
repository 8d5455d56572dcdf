"""The wire format alone: the op table and what is derived from it, link
framing, frames to and from the router, the limits of decode_requests."""
from __future__ import annotations

import msgpack
import pytest

from flin import linkframe, protocol
from flin.protocol import (
    CAS, DEL, EXPIRE, GET, INCR, MGET, MSET, NX, PERSIST, PING, SET, SNAPSHOT_OPEN, STATS,
    XX, ErrorReply,
)


def test_the_op_table_is_complete_and_consistent():
    codes = [op.code for op in protocol.OPS]
    assert codes == list(range(len(codes)))       # every opcode once, in order
    assert protocol.WRITES == {SET, MSET, DEL, INCR, EXPIRE, PERSIST, CAS, protocol.GETDEL}
    assert STATS in protocol.ADMIN_OPS and SNAPSHOT_OPEN in protocol.ADMIN_OPS
    assert GET not in protocol.ADMIN_OPS
    assert protocol.OP_NAMES[MGET] == "mget"
    for op in protocol.OPS:
        assert not (op.writes and op.admin)
        assert op.retry in (protocol.RETRY_YES, protocol.RETRY_NO, protocol.RETRY_UID,
                            protocol.RETRY_PLAIN)


@pytest.mark.parametrize("cmd,safe", [
    ([GET, b"k"], True), ([MGET, [b"k"]], True), ([PING], True),
    ([SET, b"k", b"v", None, 0], True), ([SET, b"k", b"v", None, NX], False),
    ([SET, b"k", b"v", None, XX], False), ([MSET, [b"k", b"v"], None], True),
    ([SET, b"k", b"v", None, protocol.GET_OLD], False), ([protocol.GETDEL, b"k"], False),
    ([INCR, b"k", 1, b"uid"], True), ([CAS, b"k", None, b"v", b"uid"], True),
    ([DEL, [b"k"]], False), ([EXPIRE, b"k", 5], False), ([PERSIST, b"k"], False),
    ([99], False),
])
def test_retry_safety_comes_from_the_table(cmd, safe):
    assert protocol.retry_safe(cmd) is safe


def test_written_keys():
    assert protocol.written_keys([SET, b"k", b"v", None, 0]) == [b"k"]
    assert protocol.written_keys([MSET, [b"a", b"1", b"b", b"2"], None]) == [b"a", b"b"]
    assert protocol.written_keys([DEL, [b"a", b"b"]]) == [b"a", b"b"]


def test_link_framing_keeps_partial_frames_for_the_next_read():
    payloads = [b"", b"x", b"y" * 70_000]
    stream = b"".join(linkframe.link_frame(p) for p in payloads)
    buf = bytearray()
    got = []
    for i in range(0, len(stream), 7):            # in small, unaligned pieces
        buf += stream[i:i + 7]
        got += linkframe.link_frames(buf)
    assert got == payloads and buf == bytearray()
    buf = bytearray(linkframe.link_frame(b"whole") + linkframe.link_frame(b"half")[:5])
    assert linkframe.link_frames(buf) == [b"whole"] and len(buf) == 5


def test_link_reader_reads_a_big_frame_in_place_between_small_ones():
    """Over a real socket pair, in odd pieces: small frames come out as
    bytes, a frame of BIG_FRAME or more as one bytearray of its own size."""
    import socket
    import threading
    big = bytes(range(256)) * (linkframe.BIG_FRAME // 128)       # 2 MiB
    payloads = [b"a", big, b"", b"z" * 1000, big[:linkframe.BIG_FRAME]]
    stream = b"".join(linkframe.link_frame(p) for p in payloads)
    a, b = socket.socketpair()

    def write():
        for i in range(0, len(stream), 300_007):
            a.sendall(stream[i:i + 300_007])
        a.close()

    t = threading.Thread(target=write)
    t.start()
    reader, got = linkframe.LinkReader(), []
    while reader.read(b):
        got += reader.frames()
    t.join()
    b.close()
    assert got == payloads
    assert [type(f) for f in got] == [bytes, bytearray, bytes, bytes, bytearray]


def test_shard_replies_in_parts():
    part = protocol.encode_part(9, [b"v", None])
    assert protocol.decode_reply(part) == (9, [b"v", None], True)
    assert protocol.decode_reply(protocol.encode(9, [1])) == (9, [1], False)


def test_messages_round_trip_with_error_results():
    err = ErrorReply(7, "queue full")
    assert protocol.decode(protocol.encode(9, [b"v", None, err, 3])) == (9, [b"v", None, err, 3])
    assert protocol.decode_replies(protocol.encode_replies([(1, [True]), (2, err)])) \
        == [(1, [True]), (2, err)]
    assert protocol.decode_requests(protocol.encode_requests([(5, [[PING]])])) == [[5, [[PING]]]]


@pytest.mark.parametrize("frame,why", [
    (msgpack.packb({"a": 1}), "undecodable"),
    (msgpack.packb([]), "a request is"),
    (msgpack.packb([1, "not a list"]), "a request is"),
    (msgpack.packb([[1, [[PING]] * 60_000], [2, [[PING]] * 60_000]]), "more than 100000"),
    (b"\xc1", "undecodable"),
])
def test_decode_requests_refuses_what_is_not_a_request(frame, why):
    with pytest.raises(ValueError, match=why):
        protocol.decode_requests(frame)


def test_request_id_of_a_broken_frame():
    assert protocol.request_id_of(msgpack.packb([77, {"bad": 1}])) == 77
    assert protocol.request_id_of(b"\xc1garbage") == 0
