"""The shard's read ops, each ``handler(store, op) -> result``. They read
through ``store.live`` (the message's overlay first, then the LevelDB) and
never write. Each adds the bytes it returns to ``store.moved``; an MGET
past ``MAX_REPLY`` is refused before its result is built, a SCAN part stops
at its ``max_bytes``."""
from __future__ import annotations

import os
from typing import Any

from .. import errors
from ..protocol import MAX_REPLY
from .encoding import DATA, EXPIRING, expiry_of, value_of
from .store import Store

_VIEW_FROM = 1 << 20      # a value this big is answered as a view of the stored bytes (no copy)


def _value(raw: bytes) -> Any:
    """``value_of(raw)``, without copying a big value (msgpack packs the view)."""
    if len(raw) < _VIEW_FROM:
        return value_of(raw)
    return memoryview(raw)[1 if raw[0] == 0 else 9:]


def ping(store: Store, op: list) -> int:
    """[PING] -> the worker's pid."""
    return os.getpid()


def get(store: Store, op: list) -> bytes | list | None:
    """[GET, key] -> value or nil; [GET, key, 1] -> [value, expiry ms or 0] or nil
    (the router's read cache asks for the expiry)."""
    raw = store.live(DATA + op[1])
    if raw is None:
        return None
    n = len(raw)
    store.moved += n
    value = (raw[1:] if raw[0] == 0 else raw[9:]) if n < _VIEW_FROM else _value(raw)
    if len(op) > 2:
        return [value, 0 if raw[0] == 0 else int.from_bytes(raw[1:9], "big")]
    return value


def mget(store: Store, op: list) -> Any:
    """[MGET, [key, ...]]: values in order, nil for each missing key;
    TooLarge once they pass ``MAX_REPLY`` bytes (one key 32 times, too)."""
    live = store.live
    out: list = []
    size = 0
    for key in op[1]:
        raw = live(DATA + key)
        if raw is None:
            out.append(None)
            continue
        size += len(raw)
        if size > MAX_REPLY:
            return store.error(errors.TooLarge, "MGET result passes %d bytes (the reply limit)"
                               % MAX_REPLY)
        out.append(_value(raw))
    store.moved += size
    return out


def exists(store: Store, op: list) -> bool:
    """[EXISTS, key] -> whether it exists and has not expired."""
    return store.live(DATA + op[1]) is not None


def ttl(store: Store, op: list) -> int:
    """[TTL, key] -> ms left, -1 without expiry, -2 missing."""
    raw = store.live(DATA + op[1])
    if raw is None:
        return -2
    exp = expiry_of(raw)
    return exp - store.now if exp else -1


def scan(store: Store, op: list) -> Any:
    """[SCAN, prefix, start_after, limit, values, max_bytes, epoch] -> [flat items,
    last examined key or nil]; past ``max_bytes`` of keys and values (default
    ``MAX_REPLY``), after one entry at least, the part stops there. A part
    planned by another epoch's ring than a resharded shard's is ``Moved``."""
    _, prefix, start_after, limit, values = op[:5]
    if store.owner is not None and len(op) > 6 and op[6] != store.epoch:
        return store.error(errors.Moved, "shard %d is at epoch %d, the scan was planned at %r"
                           % (store.shard, store.epoch, op[6]))
    max_bytes = op[5] if len(op) > 5 else MAX_REPLY
    if store.pend:                   # scans see this message's earlier writes
        failure = store.settle()
        if failure is not None:
            return failure
    dprefix = DATA + prefix
    start = dprefix
    if start_after is not None and DATA + start_after >= dprefix:
        start = DATA + start_after + b"\x00"
    out: list = []
    found = examined = size = 0
    last = None
    now = store.now
    owns = store.owner.owns if store.owner is not None else None   # (a resharded shard)
    try:
        for dkey, raw in store.db.iterator(start=start, verify_checksums=True):
            if not dkey.startswith(dprefix):
                return [out, None]
            if found == limit or examined >= 10 * limit + 100 or size >= max_bytes:
                return [out, last]
            examined += 1
            last = dkey[1:]
            if raw[0] == EXPIRING and int.from_bytes(raw[1:9], "big") <= now:
                continue
            if owns is not None and not owns(last):
                continue
            found += 1
            out.append(last)
            size += len(last)
            if values:
                out.append(_value(raw))
                size += len(raw)
        return [out, None]
    finally:
        store.moved += size
