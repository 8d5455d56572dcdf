"""The client's command methods, shared by ``Client`` (which runs each at
once) and ``Pipeline`` (which queues them). Each method builds one wire
command (see ``protocol.py``) and says how to turn its raw result into the
return value; ``_cmd`` is what the two classes do differently."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from .protocol import (
    CAS, COMPACT, DEL, EXISTS, EXPIRE, GET, INCR, MGET, MSET, NX, PERSIST, PING, SCAN, SET,
    SHARD, SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, STATS, STATUS, TTL, XX,
)

Key = bytes | str
# Commands sent again after an unknown outcome (a timeout, OutcomeUnknown):
# their effect and their answer are the same the second time. DEL, EXPIRE
# and PERSIST are not here: their effect is, but a retry would answer 0 or
# False for what the first attempt did. (INCR and CAS carry request ids.)
_IDEMPOTENT = {PING, GET, EXISTS, TTL, MGET, SCAN, STATUS, SET, MSET, STATS, COMPACT}


def _b(x: Any, what: str = "key") -> bytes:
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(x).__name__))


def _ms(seconds: float) -> int:
    ms = int(round(seconds * 1000))
    return 1 if ms == 0 and seconds > 0 else ms


def _same(x: Any) -> Any:
    return x


def _none(x: Any) -> None:
    return None


def _seconds(ms: int) -> float:
    return float(ms) if ms < 0 else ms / 1000.0


def _scan_page(values: bool) -> Callable[[Any], tuple]:
    def convert(r: Any) -> tuple:
        items, cursor = r
        return ([tuple(kv) for kv in items] if values else items), cursor
    return convert


class Commands:
    """The command methods shared by ``Client`` (runs each at once) and
    ``Pipeline`` (queues them). Each builds the wire command and says how to
    turn the raw result into the return value."""

    def _cmd(self, cmd: list, convert: Callable[[Any], Any] = _same) -> Any:
        raise NotImplementedError

    def ping(self) -> bool:
        """True if the router answers. Raises ``Timeout`` if it does not."""
        return self._cmd([PING])

    def get(self, key: Key) -> bytes | None:
        """The value of ``key``, or None if it does not exist (an empty value is ``b""``).
        Raises ``ShardUnavailable`` if the key's shard is down and the router's
        read cache does not hold the key (a cached value is never stale)."""
        return self._cmd([GET, _b(key)])

    def set(self, key: Key, value: bytes | str, ttl: float | None = None,
            nx: bool = False, xx: bool = False) -> bool | None:
        """Store ``value`` under ``key``.

        ttl: seconds until the key expires (None: never).
        nx / xx: write only if the key is absent / present.
        Returns None, or with ``nx``/``xx`` whether it wrote.
        Raises ``TooLarge`` past 64 KiB keys or 64 MiB values, ``ValueError``
        for ``nx`` with ``xx`` or a ttl <= 0.
        """
        if nx and xx:
            raise ValueError("nx and xx exclude each other")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        flags = NX if nx else XX if xx else 0
        return self._cmd([SET, _b(key), _b(value, "value"),
                          None if ttl is None else _ms(ttl), flags])

    def delete(self, *keys: Key) -> int:
        """Delete ``keys``; returns how many existed."""
        return self._cmd([DEL, [_b(k) for k in keys]])

    def exists(self, key: Key) -> bool:
        """Whether ``key`` exists (and has not expired)."""
        return self._cmd([EXISTS, _b(key)])

    def mget(self, keys: Iterable[Key]) -> list[bytes | None]:
        """Values of ``keys`` in their order, None for each missing key.
        Atomic per shard, not across shards."""
        return self._cmd([MGET, [_b(k) for k in keys]])

    def mset(self, mapping: Mapping[Key, bytes | str] | Iterable[tuple[Key, bytes | str]],
             ttl: float | None = None) -> None:
        """Store every pair; ``ttl`` (seconds) applies to each key. The keys of
        one shard are written in one atomic batch; across shards, a failure
        (raised as the first shard's error) may leave some shards written."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        flat: list[bytes] = []
        for k, v in pairs:
            flat.append(_b(k))
            flat.append(_b(v, "value"))
        return self._cmd([MSET, flat, None if ttl is None else _ms(ttl)], _none)

    def incr(self, key: Key, by: int = 1) -> int:
        """Add ``by`` to the signed 64-bit integer at ``key`` (missing counts as 0)
        and return the new value. Raises ``NotAnInteger`` if the value is not a
        decimal integer (it is left as it was), ``Overflow`` past 64 bits.
        Safe to retry: the request carries an id the shard remembers."""
        return self._cmd([INCR, _b(key), int(by), os.urandom(12)])

    def decr(self, key: Key, by: int = 1) -> int:
        """``incr(key, -by)``."""
        return self.incr(key, -int(by))

    def expire(self, key: Key, seconds: float) -> bool:
        """Set ``key`` to expire in ``seconds`` (<= 0 deletes it now).
        Returns whether the key exists."""
        return self._cmd([EXPIRE, _b(key), _ms(seconds)])

    def persist(self, key: Key) -> bool:
        """Remove ``key``'s expiry; returns whether it had one."""
        return self._cmd([PERSIST, _b(key)])

    def ttl(self, key: Key) -> float:
        """Seconds left before ``key`` expires; -1.0 if it never does, -2.0 if
        it does not exist (Redis's answers)."""
        return self._cmd([TTL, _b(key)], _seconds)

    def cas(self, key: Key, expected: bytes | str | None, new: bytes | str) -> bool:
        """Compare-and-set: store ``new`` only if the value is ``expected``
        (None: only if the key is absent). Returns whether it swapped.
        Atomic on the key's shard; safe to retry (it carries a request id)."""
        exp = None if expected is None else _b(expected, "value")
        return self._cmd([CAS, _b(key), exp, _b(new, "value"), os.urandom(12)])

    def scan(self, prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
             values: bool = False) -> tuple[list, bytes | None]:
        """One page of keys starting with ``prefix``, in ascending byte order,
        after ``start_after``. Returns ``(items, cursor)``: items are keys, or
        ``(key, value)`` pairs with ``values=True``; pass ``cursor`` as the next
        ``start_after``; it is None when the range is done. A page may hold
        fewer than ``limit`` items (at most 10,000) before the end."""
        sa = None if start_after is None else _b(start_after)
        return self._cmd([SCAN, _b(prefix), sa, int(limit), bool(values)], _scan_page(values))

    def status(self) -> dict:
        """``{"router": {"pid", "uptime", "deaths"}, "supervisor": pid, "shards":
        [{"id", "pid", "alive", "error", "deaths"}]}``, asking every shard;
        ``deaths`` counts restarts in a row (the supervisor's backoff)."""
        return self._cmd([STATUS])

    def stats(self) -> dict:
        """Counters of the router and of every shard (see ``flin stats``):
        ``{"router": {"requests", "in_flight", "errors": {name: n}, "queues",
        "latency": {kind: {"count", "p50_ms", ..., "buckets"}}, "uptime_s", ...},
        "shards": [{"id", "alive", "ops": {op: n}, "errors", "keys",
        "keys_estimated", "disk_bytes", "cache", "compaction", "leveldb_stats"}]}``.
        A shard that does not answer appears with ``alive`` False and ``error``."""
        return self._cmd([STATS])

    def compact(self, shard: int | None = None) -> list[bool] | bool:
        """Start a LevelDB compaction on ``shard`` (None: on every shard) and
        return at once: True where one started, False where one was running.
        Progress and outcome show in ``stats()`` under ``compaction``.
        Raises ``BadRequest`` for a shard that does not exist, and the shard's
        error (e.g. ``ShardUnavailable``) if any targeted shard is down."""
        if shard is None:
            return self._cmd([COMPACT])
        return self._cmd([SHARD, int(shard), [COMPACT]])

    def shard_stats(self, shard: int) -> dict:
        """The counters of one shard (one entry of ``stats()["shards"]``, without id)."""
        return self._cmd([SHARD, int(shard), [STATS]])

    def snapshot_open(self, shard: int) -> int:
        """Take a LevelDB snapshot on ``shard``; returns its id. The shard
        releases it after 60 s without a ``snapshot_read`` (see ``flin backup``)."""
        return self._cmd([SHARD, int(shard), [SNAPSHOT_OPEN]])

    def snapshot_read(self, shard: int, snapshot: int, after: bytes | None = None,
                      limit: int = 10_000, max_bytes: int = 4 << 20) -> tuple[list, bytes | None]:
        """One page of the snapshot's raw LevelDB entries (every prefix, in
        order) after raw key ``after``: ``([(raw_key, raw_value), ...], cursor)``,
        at most ``limit`` entries and about ``max_bytes``; ``cursor`` is None at
        the end. Raises ``BadRequest`` if the snapshot expired."""
        def pairs(r: Any) -> tuple:
            it = iter(r[0])
            return list(zip(it, it)), r[1]
        return self._cmd([SHARD, int(shard), [SNAPSHOT_READ, int(snapshot), after, int(limit),
                                               int(max_bytes)]], pairs)

    def snapshot_close(self, shard: int, snapshot: int) -> bool:
        """Release a snapshot; returns whether it was still open."""
        return self._cmd([SHARD, int(shard), [SNAPSHOT_CLOSE, int(snapshot)]])
