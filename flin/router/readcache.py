"""The router's read cache: values of hot keys, answered without a shard hop.

Measured first (perf/results): a GET spends a few µs in LevelDB out of
~60-90 µs end to end, so a cache inside each worker cannot pay; one in the
router, which every read and every write passes through, skips the hop.

Never stale, by construction:

- every write op the router routes (``protocol.WRITES``) drops its keys
  (``protocol.written_keys``) from the cache *before* it is sent, and bumps
  its shard's write counter;
- a GET that misses records its shard's write counter when it is routed;
  its answer is cached only if the counter has not moved since, i.e. no
  write to that shard was routed in between (a shard applies ops in order,
  so the answer then reflects every earlier write and no later one);
- the shard answers such a GET with the key's expiry, and an entry is
  dropped once its expiry passes.

With several routers (``--routers``), a write routed by another router
must reach this cache too. The shard worker records which keys it answered
each router's cache fills with, and sends a router the recorded keys that
other routers' writes changed (``protocol.WRITTEN_ID``;
``shardworker.tracking``), over its Unix-socket link, before it answers
those writes: so those keys are in
this router's socket before the writer can acknowledge them, and this
router reads its links again after reading a turn's client requests and
before answering any of them from the cache (``loop.Router._drain_front``).
``forget`` drops the keys and bumps the shard's counter as a local write
does. A shard this router is not linked to (down, restarting, or with
bytes left unread in its socket) is not answered from the cache, and its
entries are dropped when it says hello again (``forget_shard``): it may
have taken writes through other routers meanwhile. On the ZeroMQ link
(``--backend-keys``) a message is not in the peer's socket when ``send``
returns, so there a pool of routers runs without the cache.

Bounded in bytes (LRU); values larger than 1/16 of the cache are not kept.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from ..protocol import written_keys

log = logging.getLogger("flin.router")

MISS = object()
_ENTRY_OVERHEAD = 64          # bytes charged per entry beyond key and value


class ReadCache:
    @classmethod
    def for_router(cls, cfg: Any, shards: int, peers: bool) -> "ReadCache | None":
        """The cache a router keeps: none if ``--read-cache-mb 0``, nor when
        other routers share the shards over ZeroMQ (see above)."""
        if cfg.read_cache_mb <= 0:
            return None
        if peers and cfg.zmq_links:
            log.info("router %d: no read cache with %s", cfg.router_id,
                     "other nodes' routers" if cfg.etcd else "--backend-keys")
            return None
        return cls(int(cfg.read_cache_mb * 2**20), shards)

    def __init__(self, max_bytes: int, shards: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.writes = [0] * shards           # write ops routed per shard
        self.hits = [0] * shards
        self.misses = [0] * shards
        self.notices = 0                     # keys-written notices from shards (other routers' writes)
        self._d: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def grow(self, shards: int) -> None:
        """Counters for ``shards`` shards (a reshard's new ones)."""
        for counts in (self.writes, self.hits, self.misses):
            counts += [0] * (shards - len(counts))

    def get(self, shard: int, key: bytes) -> Any:
        """The cached value, or ``MISS``."""
        entry = self._d.get(key)
        if entry is None:
            self.misses[shard] += 1
            return MISS
        value, deadline = entry
        if deadline and time.time() >= deadline:
            self._drop(key)
            self.misses[shard] += 1
            return MISS
        self._d.move_to_end(key)
        self.hits[shard] += 1
        return value

    def fill(self, shard: int, key: bytes, value: bytes, expiry_ms: int, token: int) -> None:
        """Keep a GET's answer, unless a write to its shard was routed since
        the GET was (``token`` is ``writes[shard]`` at that time)."""
        if token != self.writes[shard]:
            return
        size = len(key) + len(value) + _ENTRY_OVERHEAD
        if size > self.max_bytes >> 4:
            return
        self._drop(key)
        self._d[key] = (value, expiry_ms / 1000.0 if expiry_ms else 0.0)
        self.bytes += size
        while self.bytes > self.max_bytes:
            k, (v, _) = self._d.popitem(last=False)
            self.bytes -= len(k) + len(v) + _ENTRY_OVERHEAD

    def written(self, shard: int, op: list) -> None:
        """A write op is being routed to ``shard``: forget what it touches."""
        self.writes[shard] += 1
        if not self._d:
            return
        for k in written_keys(op):
            self._drop(k)

    def forget(self, shard: int, keys: list) -> None:
        """Another router routed writes of ``keys`` to ``shard``."""
        self.writes[shard] += 1
        self.notices += 1
        if self._d:
            for k in keys:
                if type(k) is bytes:
                    self._drop(k)

    def clear(self) -> None:
        """Drop every entry, and every fill in flight (a reshard switched rings)."""
        self.writes = [w + 1 for w in self.writes]
        self._d.clear()
        self.bytes = 0

    def forget_shard(self, shard: int, shard_of: Any) -> None:
        """Drop every entry of ``shard`` (``shard_of(key)`` names a key's shard)."""
        self.writes[shard] += 1
        for k in [k for k in self._d if shard_of(k) == shard]:
            self._drop(k)

    def _drop(self, key: bytes) -> None:
        entry = self._d.pop(key, None)
        if entry is not None:
            self.bytes -= len(key) + len(entry[0]) + _ENTRY_OVERHEAD

    def shard_stats(self, shard: int) -> dict:
        return {"hits": self.hits[shard], "misses": self.misses[shard]}

    def stats(self) -> dict:
        return {"hits": sum(self.hits), "misses": sum(self.misses), "entries": len(self._d),
                "bytes": self.bytes, "max_bytes": self.max_bytes, "notices": self.notices}
