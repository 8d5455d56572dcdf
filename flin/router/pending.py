"""What waits for shard answers in the router: the pending requests.

Every shard op the router sends has a sink ``(target, slot)``: the answer is
written to ``target.results[slot]`` and ``target.waiting`` counts down; at
zero the router completes the target (``Router.deliver``): a ``Request``
is answered, a ``Gather`` combines its parts into its parent's slot, a
``CacheFill`` feeds the read cache, a ``Heartbeat`` only notes the shard
is alive.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .stats import PIPELINE


class Request:
    """One client message awaiting its results."""

    __slots__ = ("ident", "rid", "results", "waiting", "kind", "t0")

    def __init__(self, ident: bytes, rid: int, n: int, kind: int = PIPELINE) -> None:
        self.ident, self.rid = ident, rid
        self.kind, self.t0 = kind, time.monotonic()   # for the latency histograms
        self.results: list = [None] * n
        self.waiting = n


class Gather:
    """A command split over several shard ops."""

    __slots__ = ("results", "waiting", "parent", "slot", "finish")

    def __init__(self, n: int, parent: Any, slot: int, finish: Callable[[list], Any]) -> None:
        self.results: list = [None] * n
        self.waiting = n
        self.parent, self.slot, self.finish = parent, slot, finish


class CacheFill:
    """Sink of a GET that missed the read cache: caches its answer (if no
    write to the shard was routed meanwhile) and hands the value on."""

    __slots__ = ("results", "waiting", "parent", "slot", "shard", "key", "token")

    def __init__(self, parent: Any, slot: int, shard: int, key: bytes, token: int) -> None:
        self.results: list = [None]
        self.waiting = 1
        self.parent, self.slot, self.shard, self.key, self.token = parent, slot, shard, key, token

    def complete(self, router: Any) -> None:
        answer = self.results[0]
        if type(answer) is list:  # [value, expiry_ms]
            value = answer[0]
            router.cache.fill(self.shard, self.key, value, answer[1], self.token)
            answer = value
        router.deliver(self.parent, self.slot, answer)


class Heartbeat:
    """Sink for the router's own pings."""

    __slots__ = ("results", "waiting")

    def __init__(self) -> None:
        self.results, self.waiting = [None], 1
