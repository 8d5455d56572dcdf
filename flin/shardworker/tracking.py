"""Which keys each router may hold in its read cache, so that a write routed
by another router is told only to those that may (``Tracker``; with one
router there is nothing to tell).

Redis's client-side caching in its default mode works this way: the server
remembers the keys a client read for its cache and invalidates only those.
Here a router fills its cache only from a GET it sends with the expiry flag
(``[GET, key, 1]``, ``router.pending.CacheFill``); the worker records the
key for that router when it answers with a value. After a segment of ops is
committed and before any of it is answered, each router gets
``[WRITTEN_ID, keys]`` for the keys it was recorded for that other routers'
writes changed (those are forgotten: it drops them). So a router's socket
holds the notice before the write can be acknowledged
(``router.readcache`` says why that is enough).

Bounded: at most ``_MAX_KEYS`` keys and ``_MAX_BYTES`` of key bytes per
router; past either, the oldest quarter is sent to the router as forgotten
(it drops them from its cache) and let go. A router that (re)connects starts
with nothing recorded: it drops the shard's entries when it hears hello.
"""
from __future__ import annotations

from typing import Iterator

from .. import protocol
from ..protocol import GET, WRITES, written_keys

_MAX_KEYS = 4096          # keys recorded per router (per shard)
_MAX_BYTES = 256 << 10    # key bytes recorded per router (per shard)


class Tracker:
    def __init__(self, routers: int) -> None:
        self.keys: list[dict[bytes, None]] = [{} for _ in range(routers)]
        self.bytes = [0] * routers

    def reset(self, router: int) -> None:
        """``router`` (re)connected: nothing of its cache is known."""
        self.keys[router] = {}
        self.bytes[router] = 0

    def segment(self, ops: list, results: list, spans: list[tuple[int, int, int]],
                first: int, end: int) -> Iterator[tuple[int, bytes]]:
        """For ``ops[first:end]`` (committed; ``results`` theirs, from
        ``first``): record the cache fills, then yield ``(router, notice)``
        for every router whose recorded keys another router's writes changed,
        and for every router past its bounds."""
        writes: list[tuple[int, list]] = []
        tracked = self.keys
        for origin, lo, hi in spans:
            lo, hi = max(lo, first), min(hi, end)
            mine = tracked[origin]
            for i in range(lo, hi):
                op = ops[i]
                if type(op) is not list or not op:
                    continue
                code = op[0]
                if code == GET:
                    if len(op) > 2 and type(results[i - first]) is list and type(op[1]) is bytes:
                        key = op[1]
                        if key in mine:
                            del mine[key]       # refreshed: the newest go last
                        else:
                            self.bytes[origin] += len(key)
                        mine[key] = None
                elif code in WRITES:
                    try:
                        writes.append((origin, written_keys(op)))
                    except (KeyError, IndexError, TypeError):
                        pass                    # malformed: answered an error, wrote nothing
        notices: dict[int, list[bytes]] = {}
        for origin, keys in writes:
            for r, recorded in enumerate(tracked):
                for k in keys:
                    if type(k) is bytes and k in recorded:
                        del recorded[k]
                        self.bytes[r] -= len(k)
                        if r != origin:         # the writer dropped it itself
                            notices.setdefault(r, []).append(k)
        for r, recorded in enumerate(tracked):
            if len(recorded) > _MAX_KEYS or self.bytes[r] > _MAX_BYTES:
                oldest = list(recorded)[:len(recorded) // 4 + 1]
                for k in oldest:
                    del recorded[k]
                    self.bytes[r] -= len(k)
                notices.setdefault(r, []).extend(oldest)
        for r, keys in notices.items():
            yield r, protocol.encode(protocol.WRITTEN_ID, keys)
