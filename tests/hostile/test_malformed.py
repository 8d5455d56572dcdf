"""Hostile and malformed requests from a raw DEALER: each gets a typed
BadRequest reply, the router stays up, and the next good request works."""
from __future__ import annotations

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flin import errors, protocol
from flin.protocol import GET, INCR, PING, SCAN, SET


@pytest.fixture(scope="module")
def raw(shared_cluster):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(shared_cluster.endpoint)
    yield sock
    sock.close(0)
    ctx.term()


def ask(sock, *frames: bytes, timeout_ms: int = 5000):
    sock.send_multipart(list(frames))
    assert sock.poll(timeout_ms), "no reply: the router dropped the message or died"
    return protocol.decode(sock.recv())


def assert_bad_request(reply) -> None:
    assert type(reply) is protocol.ErrorReply, reply
    assert isinstance(errors.error_for_code(reply.code, reply.message), errors.BadRequest), reply
    assert reply.message


def assert_still_serving(sock, client) -> None:
    rid, results = ask(sock, protocol.encode(777, [[PING]]))
    assert (rid, results) == (777, [True])
    client.set(b"mal:probe", b"ok")
    assert client.get(b"mal:probe") == b"ok"


HOSTILE_FRAMES = {
    "empty": b"",
    "never-used byte": b"\xc1",
    "truncated array": b"\x92\x01",
    "not an array": msgpack.packb(5),
    "a string": msgpack.packb("hello"),
    "a map": msgpack.packb({1: [[PING]]}),
    "one element": msgpack.packb([1]),
    "three elements": msgpack.packb([1, [[PING]], 3]),
    "items not an array": msgpack.packb([1, b"x"]),
    "float id": msgpack.packb([1.5, [[PING]]]),
    "str id": msgpack.packb(["id", [[PING]]]),
    "trailing bytes": msgpack.packb([1, [[PING]]]) + b"\x00",
    "str32 of 4 GiB announced": b"\x92\x01\xdb\xff\xff\xff\xff",
    "bin32 of 4 GiB announced": b"\x92\x01\xc6\xff\xff\xff\xff",
    "array32 of 4G announced": b"\x92\x01\xdd\xff\xff\xff\xff",
    "map32 of 4G announced": b"\xdf\xff\xff\xff\xff",
    "2000-deep nesting": b"\x91" * 2000 + b"\xc0",
    "ext type": msgpack.packb([1, [msgpack.ExtType(5, b"x")]]),
    "bad utf-8": b"\x92\x01\x91\x92\x01\xa2\xff\xfe",
}


@pytest.mark.parametrize("name", list(HOSTILE_FRAMES))
def test_undecodable_message_gets_bad_request(raw, client, name):
    rid, reply = ask(raw, HOSTILE_FRAMES[name])
    assert_bad_request(reply)
    assert_still_serving(raw, client)


def test_error_reply_carries_the_request_id_when_readable(raw):
    rid, reply = ask(raw, msgpack.packb([4242, [[PING]]]) + b"junk")
    assert rid == 4242
    assert_bad_request(reply)


def test_multi_frame_message(raw, client):
    rid, reply = ask(raw, protocol.encode(5, [[PING]]), protocol.encode(6, [[PING]]))
    assert_bad_request(reply)
    assert_still_serving(raw, client)


BAD_COMMANDS = {
    "unknown opcode": [999],
    "negative opcode": [-1, b"k"],
    "not an array": b"get",
    "empty command": [],
    "opcode not int": [b"\x01", b"k"],
    "GET without key": [GET],
    "GET extra arg": [GET, b"k", b"k2"],
    "str key": [GET, "mal:k"],
    "int key": [GET, 5],
    "nil key": [GET, None],
    "int value": [SET, b"mal:k", 5, None, 0],
    "float ttl": [SET, b"mal:k", b"v", 1.5, 0],
    "negative ttl": [SET, b"mal:k", b"v", -5, 0],
    "bad flags": [SET, b"mal:k", b"v", None, 7],
    "both flags": [SET, b"mal:k", b"v", None, 3],
    "str increment": [INCR, b"mal:k", "1", None],
    "float increment": [INCR, b"mal:k", 1.0, None],
    "increment past int64": [INCR, b"mal:k", 2 ** 63, None],
    "bool increment": [INCR, b"mal:k", True, None],
    "str request uid": [INCR, b"mal:k", 1, "uid"],
    "scan limit 0": [SCAN, b"", None, 0, False],
    "scan limit str": [SCAN, b"", None, b"10", False],
    "scan values int": [SCAN, b"", None, 10, 1],
    "mget keys not list": [protocol.MGET, b"mal:k"],
    "mset odd": [protocol.MSET, [b"mal:k"], None],
    "del keys not list": [protocol.DEL, b"mal:k"],
}


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
def test_bad_command_gets_bad_request_in_its_place(raw, client, name):
    client.set(b"mal:k", b"untouched")
    rid, results = ask(raw, protocol.encode(31, [[PING], BAD_COMMANDS[name], [GET, b"mal:k"]]))
    assert rid == 31
    assert len(results) == 3
    assert results[0] is True
    assert_bad_request(results[1])
    assert results[2] == b"untouched"  # nothing was written by the bad command
    assert_still_serving(raw, client)


def test_empty_request_gets_empty_reply(raw):
    assert ask(raw, protocol.encode(8, [])) == (8, [])


def test_many_requests_in_flight_answered_by_id(raw):
    for i in range(100, 150):
        raw.send(protocol.encode(i, [[PING]] if i % 2 else [[12345]]))
    got = {}
    while len(got) < 50:
        assert raw.poll(5000)
        for rid, results in protocol.decode_replies(raw.recv()):  # replies may share a frame
            assert rid not in got
            got[rid] = results
    assert sorted(got) == list(range(100, 150))
    for rid, results in got.items():
        if rid % 2:
            assert results == [True]
        else:
            assert_bad_request(results[0])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=st.one_of(
    st.binary(max_size=64),
    st.builds(lambda body, cut: msgpack.packb([1, body])[:cut],
              st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary(max_size=8)
                           | st.text(max_size=8), lambda c: st.lists(c, max_size=4), max_leaves=12),
              st.integers(0, 64)),
))
def test_random_frames_get_an_answer_and_server_lives(raw, client, frame):
    rid, reply = ask(raw, frame)
    assert type(reply) is protocol.ErrorReply or type(reply) is list
    if type(reply) is protocol.ErrorReply:
        assert_bad_request(reply)
    else:
        for r in reply:
            if type(r) is protocol.ErrorReply:  # typed, and never a server bug
                err = errors.error_for_code(r.code, r.message)
                assert type(err) not in (errors.ServerError, errors.InternalError), r
    rid, results = ask(raw, protocol.encode(99, [[PING]]))
    assert (rid, results) == (99, [True])


def test_several_requests_in_one_frame_each_answered(raw):
    raw.send(protocol.encode_requests([(1, [[PING]]), (2, [[12345]]), (3, [[PING], [PING]])]))
    got = {}
    while len(got) < 3:
        assert raw.poll(5000)
        got.update(dict(protocol.decode_replies(raw.recv())))
    assert got[1] == [True] and got[3] == [True, True]
    assert_bad_request(got[2][0])


@pytest.mark.parametrize("frame", [
    b"\x92\x92\x01\x90\xc0",                                     # second request is nil
    b"\x91\x93\x01\x90\x90",                                     # a request of three elements
    b"\x90",                                                       # an empty frame of requests
])
def test_malformed_multi_request_frames_rejected(raw, frame):
    rid, results = ask(raw, frame)
    assert_bad_request(results)
    assert ask(raw, protocol.encode(9, [[PING]])) == (9, [True])
