"""The shard's read ops, each ``handler(store, op) -> result``. They read
through ``store.live`` (the message's overlay first, then the LevelDB) and
never write."""
from __future__ import annotations

import os
from typing import Any

from .encoding import DATA, EXPIRING, expiry_of, value_of
from .store import Store


def ping(store: Store, op: list) -> int:
    """[PING] -> the worker's pid."""
    return os.getpid()


def get(store: Store, op: list) -> bytes | list | None:
    """[GET, key] -> value or nil; [GET, key, 1] -> [value, expiry ms or 0] or nil
    (the router's read cache asks for the expiry)."""
    raw = store.live(DATA + op[1])
    if raw is None:
        return None
    if len(op) > 2:
        return [raw[1:], 0] if raw[0] == 0 else [raw[9:], int.from_bytes(raw[1:9], "big")]
    return value_of(raw)


def mget(store: Store, op: list) -> list:
    """[MGET, [key, ...]]: values in order, nil for each missing key."""
    live = store.live
    out = []
    for key in op[1]:
        raw = live(DATA + key)
        out.append(None if raw is None else value_of(raw))
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
    """[SCAN, prefix, start_after, limit, values] -> [flat items, last examined key or nil]."""
    _, prefix, start_after, limit, values = op
    if store.pend:                   # scans see this message's earlier writes
        failure = store.settle()
        if failure is not None:
            return failure
    dprefix = DATA + prefix
    start = dprefix
    if start_after is not None and DATA + start_after >= dprefix:
        start = DATA + start_after + b"\x00"
    out: list = []
    found = examined = 0
    last = None
    now = store.now
    for dkey, raw in store.db.iterator(start=start, verify_checksums=True):
        if not dkey.startswith(dprefix):
            return [out, None]
        if found == limit or examined >= 10 * limit + 100:
            return [out, last]
        examined += 1
        last = dkey[1:]
        if raw[0] == EXPIRING and int.from_bytes(raw[1:9], "big") <= now:
            continue
        found += 1
        out.append(last)
        if values:
            out.append(value_of(raw))
    return [out, None]
