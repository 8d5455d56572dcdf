"""The router's replies to its clients, and what a client that does not read
may cost: bytes, not a number of messages.

ZeroMQ bounds a peer's queue in messages (``SNDHWM``), and one reply may be
a 64 MiB value. So the client socket's ``SNDHWM`` is 1 (``sockets.py``):
ZeroMQ holds at most two frames per client (one queued, one being written),
and with ``ROUTER_MANDATORY`` a send to a full queue raises ``zmq.Again``
at once. Such frames wait here, in order, counted in bytes, and go out as
soon as the client's queue takes them (``flush``: the loop tries again every
few ms while they move, every tick once none has for ``STILL_S``). What
waits is bounded:

- a frame that would take a client past ``CLIENT_BYTES`` waiting, or all
  clients past ``TOTAL_BYTES``, goes with each result over ``BIG`` bytes
  replaced by ``Overloaded`` (only reads return big results: not applied,
  the client may retry), or is dropped (counted) if it is still too big;
- a client with ``REFUSE_BYTES`` or ``MAX_WAITING`` frames waiting has its
  new requests answered ``Overloaded`` unread (``refusing``): a peer that
  never reads costs neither memory nor shard work;
- replies share a frame only up to ``MAX_REPLY`` bytes: past it a big reply
  goes alone, so a frame is about one request's results at most.

Small replies that wait join one frame (``MERGE_BELOW``): a client that
reads but was not quick enough for one loop turn gets them all at once
when its queue frees, as the turns would have coalesced them anyway.

So a client costs the router at most two frames in ZeroMQ plus
``CLIENT_BYTES`` here; all clients together at most ``TOTAL_BYTES`` here.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

import zmq

from .. import errors
from ..protocol import MAX_REPLY, ErrorReply, encode_replies
from ..zmqflags import NOBLOCK, NOBLOCK_MORE
from .pending import result_bytes

CLIENT_BYTES = MAX_REPLY          # bytes of replies waiting for one client
TOTAL_BYTES = 256 << 20           # ... for all clients together
REFUSE_BYTES = 16 << 20           # a client with this much waiting gets Overloaded, unread
MAX_WAITING = 10_000              # frames waiting for one client
BIG = 64 << 10                    # a result past this is refused when its frame does not fit
MERGE_BELOW = 1 << 20             # waiting replies share a frame up to this size
ZERO_COPY = 1 << 20               # a frame this big is handed to ZeroMQ without a copy
RETRY_MS = 2                      # the loop's poll timeout while waiting replies move
STILL_S = 1.0                     # ... and for this long after the last one moved


def _refused(batch: list) -> list:
    """``batch`` with every big result replaced by Overloaded."""
    err = ErrorReply(errors.Overloaded.code, "the client has %d bytes of replies it has not "
                     "read yet; big results are refused until it reads" % CLIENT_BYTES)
    return [(rid, res if type(res) is not list
             else [err if result_bytes(r) > BIG else r for r in res]) for rid, res in batch]


class ReplyQueue:
    """Sends each client its replies of a loop turn; keeps, in bytes, what a
    client's full ZeroMQ queue did not take."""

    def __init__(self, front: zmq.Socket, counts: dict) -> None:
        self.front = front
        self.counts = counts
        # client -> [deque of [frame or None (to encode again), its replies (a small
        # frame's, to merge more) or None, bytes, replies in it], bytes in all]
        self.waiting: dict[bytes, list] = {}
        self.total = 0                          # bytes waiting, all clients
        self.moved_at = 0.0                     # when a frame last started or stopped waiting

    def send(self, replies: dict[bytes, list]) -> None:
        """Each client's replies of this turn, one frame each (the hot path)."""
        put = self._put
        for ident, batch in replies.items():
            frame = encode_replies(batch)
            if len(frame) > MAX_REPLY and len(batch) > 1:
                for part, sub in self._split(batch):
                    put(ident, part, sub)
            else:
                put(ident, frame, batch)
        if self.waiting:
            self.flush()

    def _put(self, ident: bytes, frame: bytes, batch: list) -> None:
        if self.waiting and ident in self.waiting:   # behind what already waits
            self._wait(ident, frame, batch)
            return
        front = self.front
        try:
            front.send(ident, NOBLOCK_MORE)
            front.send(frame, NOBLOCK, copy=len(frame) < ZERO_COPY)
        except zmq.Again:                     # its queue is full: wait here
            self._wait(ident, frame, batch)
        except zmq.ZMQError:                  # the client left (EHOSTUNREACH)
            self.counts["dropped_replies"] += len(batch)

    def flush(self) -> None:
        """Send what waits, for each client until its queue is full again."""
        front = self.front
        for ident in list(self.waiting):
            q = self.waiting[ident]
            frames = q[0]
            while frames:
                entry = frames[0]
                frame = entry[0]
                if frame is None:                 # replies merged while waiting
                    frame = entry[0] = encode_replies(entry[1])
                try:
                    front.send(ident, NOBLOCK_MORE)
                    front.send(frame, NOBLOCK, copy=len(frame) < ZERO_COPY)
                except zmq.Again:
                    break
                except zmq.ZMQError:              # gone: nothing will take these
                    self.counts["dropped_replies"] += sum(e[3] for e in frames)
                    self.total -= q[1]
                    q[1] = 0
                    frames.clear()
                    break
                frames.popleft()
                q[1] -= entry[2]
                self.total -= entry[2]
                self.moved_at = time.monotonic()
            if not frames:
                del self.waiting[ident]

    def moving(self) -> bool:
        """Do replies wait, and has one moved lately (so: try again soon)?"""
        return bool(self.waiting) and time.monotonic() - self.moved_at < STILL_S

    def refusing(self, ident: bytes) -> bool:
        """Has ``ident`` so much waiting that its new requests are refused?"""
        q = self.waiting.get(ident)
        return q is not None and (q[1] >= REFUSE_BYTES or len(q[0]) >= MAX_WAITING)

    def _wait(self, ident: bytes, frame: bytes, batch: list) -> None:
        q = self.waiting.get(ident)
        have = q[1] if q is not None else 0
        if have + len(frame) > CLIENT_BYTES or self.total + len(frame) > TOTAL_BYTES:
            if len(frame) > BIG:
                batch = _refused(batch)
                frame = encode_replies(batch)
                self.counts["refused_replies"] += len(batch)
            if have + len(frame) > CLIENT_BYTES or self.total + len(frame) > TOTAL_BYTES:
                self.counts["dropped_replies"] += len(batch)
                return
        if q is not None and len(q[0]) >= MAX_WAITING:
            self.counts["dropped_replies"] += len(batch)
            return
        if q is None:
            q = self.waiting[ident] = [deque(), 0]
        tail = q[0][-1] if q[0] else None
        if tail is not None and tail[1] is not None and tail[2] + len(frame) < MERGE_BELOW:
            tail[0] = None                        # encoded again when it goes
            tail[1] = tail[1] + batch
            tail[2] += len(frame)
            tail[3] += len(batch)
        else:                                     # a big frame keeps no second copy of its values
            q[0].append([frame, batch if len(frame) < MERGE_BELOW else None, len(frame),
                         len(batch)])
        q[1] += len(frame)
        self.total += len(frame)
        self.moved_at = time.monotonic()
        self.counts["waited_frames"] += 1

    @staticmethod
    def _split(batch: list) -> list[tuple[bytes, list]]:
        """Frames for replies that together pass ``MAX_REPLY``: each big reply
        alone, the small ones in one frame."""
        out, small = [], []
        for reply in batch:
            frame = encode_replies([reply])
            if len(frame) > BIG:
                out.append((frame, [reply]))
            else:
                small.append(reply)
        if small:
            out.append((encode_replies(small), small))
        return out

    def stats(self) -> dict[str, Any]:
        return {"clients": len(self.waiting), "bytes": self.total}
