"""The router's reply queue on a real ZeroMQ ROUTER (SNDHWM 1, as the router
binds it) and a raw ZMTP peer that reads only when the test lets it: what
ZeroMQ does not take waits in bytes, big results past the client's budget
are refused, and small replies that wait are merged, never with a refused
reply's value."""
from __future__ import annotations

import os
import struct
import time

import zmq

from flin import errors, protocol
from flin.protocol import ErrorReply
from flin.router.replies import CLIENT_BYTES, ReplyQueue
from tests.support.hostile import _read, zmtp_connect, zmtp_frame


def _recv_frame(s) -> bytes:
    flags = _read(s, 1)[0]
    size = struct.unpack(">Q", _read(s, 8))[0] if flags & 0x02 else _read(s, 1)[0]
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = s.recv_into(view[got:])
        assert n, "peer closed"
        got += n
    return bytes(buf)


def test_big_replies_past_the_budget_are_refused_and_small_ones_merge(tmp_short):
    ctx = zmq.Context(1)
    front = ctx.socket(zmq.ROUTER)
    front.setsockopt(zmq.ROUTER_MANDATORY, 1)
    front.setsockopt(zmq.SNDHWM, 1)
    endpoint = "ipc://" + os.path.join(tmp_short, "r.sock")
    front.bind(endpoint)
    peer = zmtp_connect(endpoint)
    try:
        peer.sendall(zmtp_frame(b"hello"))
        ident, _ = front.recv_multipart()
        counts = {"dropped_replies": 0, "refused_replies": 0, "waited_frames": 0}
        q = ReplyQueue(front, counts)
        value = os.urandom(CLIENT_BYTES // 2 + 1)    # two of them pass the budget
        for rid in range(1, 5):                      # two go to ZeroMQ, one waits, one is refused
            q.send({ident: [(rid, [value])]})
            front.poll(50)                           # let ZeroMQ process its commands
        q.send({ident: [(5, [b"small"])]})           # joins the refused reply's frame
        q.send({ident: [(6, [b"tiny"])]})
        assert counts["refused_replies"] == 1 and q.total < CLIENT_BYTES + (1 << 20), (counts, q.total)
        got: dict = {}
        deadline = time.monotonic() + 20
        peer.settimeout(10)
        while len(got) < 6 and time.monotonic() < deadline:   # the client reads at last
            q.flush()
            front.poll(10)
            try:
                peer.setblocking(False)
                flags = peer.recv(1, 0x02)                    # MSG_PEEK: a frame is there
            except BlockingIOError:
                flags = b""
            finally:
                peer.setblocking(True)
            if flags:
                got.update(protocol.decode_replies(_recv_frame(peer)))
        assert sorted(got) == [1, 2, 3, 4, 5, 6]
        assert got[1] == got[2] == got[3] == [value]
        refused = got[4][0]
        assert type(refused) is ErrorReply and refused.code == errors.Overloaded.code
        assert got[5] == [b"small"] and got[6] == [b"tiny"]
        assert not q.waiting and q.total == 0
    finally:
        peer.close()
        front.close(0)
        ctx.term()
