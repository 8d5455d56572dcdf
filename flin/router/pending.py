"""What waits for shard answers in the router: the pending requests.

Every shard op the router sends has a sink ``(target, slot)``: the answer is
written to ``target.results[slot]`` and ``target.waiting`` counts down; at
zero the router completes the target (``Router.deliver``): a ``Request``
is answered, a ``Gather`` combines its parts into its parent's slot, a
``CacheFill`` feeds the read cache, a ``Heartbeat`` only notes the shard
is alive.

A target that waits for several results holds them across loop turns, so
it counts their bytes (``nbytes``, measured by its ``sizer``) against its
``cap`` (0: not counted: a single result is bounded where it is made) and
the router's budget for all of them (``Router.hold``).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..protocol import MAX_REPLY
from .stats import PIPELINE


HELD_BYTES = 256 << 20    # results held by requests and MGETs that wait for more (then Overloaded)


def result_bytes(value: Any) -> int:
    """Bytes of keys and values in a result (bytes, nested lists of them)."""
    t = type(value)
    if t is bytes:
        return len(value)
    if t is not list:
        return 0
    n = 0
    for x in value:
        tx = type(x)
        if tx is bytes:
            n += len(x)
        elif tx is list:
            n += result_bytes(x)
    return n


def flat_bytes(values: Any) -> int:
    """``result_bytes`` of a shard's MGET part (values or nil), in C."""
    return sum(map(len, filter(None, values))) if type(values) is list else 0


class Request:
    """One client message awaiting its results."""

    __slots__ = ("ident", "rid", "results", "waiting", "kind", "t0", "cap", "nbytes")
    sizer = staticmethod(result_bytes)

    def __init__(self, ident: bytes, rid: int, n: int, kind: int = PIPELINE) -> None:
        self.ident, self.rid = ident, rid
        self.kind, self.t0 = kind, time.monotonic()   # for the latency histograms
        self.results: list = [None] * n
        self.waiting = n
        self.cap = MAX_REPLY if n > 1 else 0
        self.nbytes = 0


class RespBatch(Request):
    """The commands one RESP connection sent in one loop turn, routed as one
    request: ``parts`` holds, in order, each command's reply made already
    (bytes) or ``(start, n, finish)``: its results are ``results[start:start+n]``,
    and ``finish(them, proto)`` makes its reply (``flin.router.resp.commands``)."""

    __slots__ = ("conn", "parts")

    def __init__(self, conn: Any, parts: list, n: int, kind: int = PIPELINE) -> None:
        super().__init__(b"", 0, n, kind)
        self.conn, self.parts = conn, parts
        # what one read of pipelined commands asks is not capped at one request's
        # MAX_REPLY (Redis answers it all): only the router's budget for held results
        self.cap = HELD_BYTES if n > 1 else 0


class Gather:
    """A command split over several shard ops."""

    __slots__ = ("results", "waiting", "parent", "slot", "finish", "cap", "nbytes", "sizer")

    def __init__(self, n: int, parent: Any, slot: int, finish: Callable[[list], Any],
                 cap: int = 0, sizer: Callable[[Any], int] = result_bytes) -> None:
        self.results: list = [None] * n
        self.waiting = n
        self.parent, self.slot, self.finish = parent, slot, finish
        self.cap, self.nbytes, self.sizer = cap, 0, sizer


class CacheFill:
    """Sink of a GET that missed the read cache: caches its answer (if no
    write to the shard was routed meanwhile) and hands the value on."""

    __slots__ = ("results", "waiting", "parent", "slot", "shard", "key", "token")
    cap = 0

    def __init__(self, parent: Any, slot: int, shard: int, key: bytes, token: int) -> None:
        self.results: list = [None]
        self.waiting = 1
        self.parent, self.slot, self.shard, self.key, self.token = parent, slot, shard, key, token

    def complete(self, router: Any) -> None:
        answer = self.results[0]
        if type(answer) is list:  # [value, expiry_ms]
            value = answer[0]
            if router.cache is not None:   # (held by a reshard's switch meanwhile)
                router.cache.fill(self.shard, self.key, value, answer[1], self.token)
            answer = value
        router.deliver(self.parent, self.slot, answer)


class Heartbeat:
    """Sink for the router's own pings."""

    __slots__ = ("results", "waiting")
    cap = 0

    def __init__(self) -> None:
        self.results, self.waiting = [None], 1
