"""The client's commands, one builder each: the wire command (``protocol.py``)
and how its raw result becomes the return value. ``Client`` runs a ``Call``
at once, ``Pipeline`` queues it; the argument checks live here, once: an
argument that cannot be sent faithfully (a ttl that is not finite or past
100 years, a ``by`` that is not a 64-bit integer) raises ``InvalidArgument``
when the command is built, before anything is sent.
"""
from __future__ import annotations

import math
import numbers
import operator
import os
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

from ..errors import InvalidArgument
from ..protocol import (
    CAS, COMPACT, DEL, EXISTS, EXPIRE, GET, INCR, INT64_MAX, INT64_MIN, MAX_TTL_MS, MGET, MSET,
    NX, PERSIST, PING, SCAN, SET, SHARD, SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, STATS,
    NODE, REPLICA, ROUTERS, STATUS, TTL, XX,
)

Key = bytes | str
Value = bytes | str
T = TypeVar("T")


class Call(Generic[T]):
    """One wire command and the function that turns its raw result into ``T``."""

    __slots__ = ("cmd", "convert")

    def __init__(self, cmd: list[Any], convert: Callable[[Any], T]) -> None:
        self.cmd, self.convert = cmd, convert


def as_bytes(x: object, what: str = "key") -> bytes:
    """``x`` as bytes (``str`` as UTF-8); ``TypeError`` for anything else."""
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(x).__name__))


def _ms(seconds: Any, what: str) -> int:
    """Finite ``seconds`` as whole ms (a positive fraction of a ms is 1 ms)."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise InvalidArgument("%s must be a number of seconds, not %r" % (what, seconds))
    if isinstance(seconds, numbers.Integral):
        return int(seconds) * 1000
    try:
        x = float(seconds)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise InvalidArgument("%s must be a finite number of seconds, not %r" % (what, seconds))
    ms = int(round(x * 1000))
    return 1 if ms == 0 and x > 0 else ms


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    ms = _ms(ttl, "ttl")
    if not 0 < ms <= MAX_TTL_MS:
        raise InvalidArgument("ttl must be > 0 and at most %d seconds (100 years), not %r"
                              % (MAX_TTL_MS // 1000, ttl))
    return ms


def _int64(x: Any, what: str) -> int:
    """``x`` as an int if it is an integer (not a bool, not a float) that fits
    in a signed 64-bit integer; else ``InvalidArgument``."""
    try:
        n = operator.index(x)
    except TypeError:
        n = None
    if n is None or isinstance(x, bool):
        raise InvalidArgument("%s must be an integer, not %r" % (what, x))
    if not INT64_MIN <= n <= INT64_MAX:
        raise InvalidArgument("%s must fit in a signed 64-bit integer (%d..%d), not %d"
                              % (what, INT64_MIN, INT64_MAX, n))
    return n


def _same(x: Any) -> Any:
    return x


def _none(x: Any) -> None:
    return None


def _seconds(ms: int) -> float:
    return float(ms) if ms < 0 else ms / 1000.0


def _pairs(r: Any) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    it = iter(r[0])
    return list(zip(it, it)), r[1]


def _scan_page(values: bool) -> Callable[[Any], tuple[list[Any], bytes | None]]:
    def convert(r: Any) -> tuple[list[Any], bytes | None]:
        items, cursor = r
        return ([tuple(kv) for kv in items] if values else items), cursor
    return convert


# -- data -------------------------------------------------------------------------
_REPLICA_READS = frozenset((GET, MGET, EXISTS, TTL))


def from_replica(cmd: list[Any]) -> list[Any]:
    """``cmd`` as a read any copy may answer (``read_from="replica"``), if it is one."""
    return [REPLICA, cmd] if cmd[0] in _REPLICA_READS else cmd


def ping() -> Call[bool]:
    return Call([PING], _same)


def get(key: Key) -> Call[bytes | None]:
    return Call([GET, as_bytes(key)], _same)


def set_(key: Key, value: Value, ttl: float | None = None, nx: bool = False,
         xx: bool = False) -> Call[bool | None]:
    if nx and xx:
        raise InvalidArgument("nx and xx exclude each other")
    flags = NX if nx else XX if xx else 0
    return Call([SET, as_bytes(key), as_bytes(value, "value"), _ttl_ms(ttl), flags], _same)


def delete(keys: Iterable[Key]) -> Call[int]:
    return Call([DEL, [as_bytes(k) for k in keys]], _same)


def exists(key: Key) -> Call[bool]:
    return Call([EXISTS, as_bytes(key)], _same)


def mget(keys: Iterable[Key]) -> Call[list[bytes | None]]:
    return Call([MGET, [as_bytes(k) for k in keys]], _same)


def mset(mapping: Mapping[Key, Value] | Iterable[tuple[Key, Value]],
         ttl: float | None = None) -> Call[None]:
    ms = _ttl_ms(ttl)
    pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
    flat: list[bytes] = []
    for k, v in pairs:
        flat.append(as_bytes(k))
        flat.append(as_bytes(v, "value"))
    return Call([MSET, flat, ms], _none)


def incr(key: Key, by: int = 1) -> Call[int]:
    # the request uid lets the shard apply a resent INCR once
    return Call([INCR, as_bytes(key), _int64(by, "by"), os.urandom(12)], _same)


def decr(key: Key, by: int = 1) -> Call[int]:
    n = _int64(by, "by")
    if n == INT64_MIN:
        raise InvalidArgument("decr by %d: its negation does not fit in 64 bits" % n)
    return incr(key, -n)


def expire(key: Key, seconds: float) -> Call[bool]:
    ms = _ms(seconds, "seconds")
    if ms > MAX_TTL_MS:
        raise InvalidArgument("seconds must be at most %d (100 years), not %r"
                              % (MAX_TTL_MS // 1000, seconds))
    return Call([EXPIRE, as_bytes(key), max(ms, -MAX_TTL_MS)], _same)   # <= 0: delete now


def persist(key: Key) -> Call[bool]:
    return Call([PERSIST, as_bytes(key)], _same)


def ttl(key: Key) -> Call[float]:
    return Call([TTL, as_bytes(key)], _seconds)


def cas(key: Key, expected: Value | None, new: Value) -> Call[bool]:
    exp = None if expected is None else as_bytes(expected, "value")
    return Call([CAS, as_bytes(key), exp, as_bytes(new, "value"), os.urandom(12)], _same)


def scan(prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
         values: bool = False) -> Call[tuple[list[Any], bytes | None]]:
    sa = None if start_after is None else as_bytes(start_after)
    return Call([SCAN, as_bytes(prefix), sa, _int64(limit, "limit"), bool(values)],
                _scan_page(values))


# -- cluster and admin ---------------------------------------------------------------
def status() -> Call[dict[str, Any]]:
    return Call([STATUS], _same)


def routers() -> Call[list[str]]:
    return Call([ROUTERS], _same)


def node() -> Call[dict[str, Any] | None]:
    return Call([NODE], _same)


def stats() -> Call[dict[str, Any]]:
    return Call([STATS], _same)


def compact(shard: int | None = None) -> Call[list[bool] | bool]:
    if shard is None:
        return Call([COMPACT], _same)
    return Call([SHARD, _int64(shard, "shard"), [COMPACT]], _same)


def shard_stats(shard: int) -> Call[dict[str, Any]]:
    return Call([SHARD, _int64(shard, "shard"), [STATS]], _same)


def snapshot_open(shard: int) -> Call[int]:
    return Call([SHARD, _int64(shard, "shard"), [SNAPSHOT_OPEN]], _same)


def snapshot_read(shard: int, snapshot: int, after: bytes | None = None, limit: int = 10_000,
                  max_bytes: int = 4 << 20) -> Call[tuple[list[tuple[bytes, bytes]], bytes | None]]:
    return Call([SHARD, _int64(shard, "shard"), [SNAPSHOT_READ, _int64(snapshot, "snapshot"), after,
                                                 _int64(limit, "limit"),
                                                 _int64(max_bytes, "max_bytes")]], _pairs)


def snapshot_close(shard: int, snapshot: int) -> Call[bool]:
    return Call([SHARD, _int64(shard, "shard"), [SNAPSHOT_CLOSE, _int64(snapshot, "snapshot")]],
                _same)
