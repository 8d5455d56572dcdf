"""The shard's write ops, each ``handler(store, op) -> result``. Every change
goes through ``store.put``/``store.remove`` into the message's overlay, which
``Store._commit`` writes as one batch, so nothing here touches the LevelDB
directly. INCR and CAS remember their answer under the request's uid for
``UID_KEEP_MS``, so a retried request is applied once."""
from __future__ import annotations

import re
from typing import Any

from .. import errors
from ..protocol import GET_OLD, INT64_MAX, INT64_MIN, KEEP_TTL, NX, XX, ErrorReply
from .encoding import DATA, EXPIRING, MISSING, UID, expiry_key, expiry_of, value_of
from .store import Store

UID_KEEP_MS = 10 * 60 * 1000          # how long a request uid is remembered, ms
_INT = re.compile(rb"0|-?[1-9][0-9]{0,18}")   # as Redis reads a counter: no "-0", no "01"


def set_(store: Store, op: list) -> bytes | bool | None:
    """[SET, key, value, ttl_ms, flags]: None, or whether it wrote with NX/XX;
    with GET_OLD the value before (nil if none), whether or not it wrote."""
    _, key, value, ttl_ms, flags = op
    if type(value) is not bytes:
        raise TypeError("value must be bytes")
    dkey = DATA + key
    if not flags:
        store.put(dkey, value, store.deadline(ttl_ms))
        return None
    raw = store.live(dkey)
    old = None if raw is None or not flags & GET_OLD else value_of(raw)
    if (flags & NX and raw is not None) or (flags & XX and raw is None):
        return old if flags & GET_OLD else False
    expiry = expiry_of(raw) if flags & KEEP_TTL and raw is not None else store.deadline(ttl_ms)
    store.put(dkey, value, expiry)
    return old if flags & GET_OLD else (True if flags & (NX | XX) else None)


def getdel(store: Store, op: list) -> bytes | None:
    """[GETDEL, key]: the value (nil if none), and the key is gone."""
    dkey = DATA + op[1]
    raw = store.live(dkey)
    if raw is None:
        return None
    store.remove(dkey)
    return value_of(raw)


def delete(store: Store, op: list) -> int:
    """[DEL, [key, ...]]: how many existed."""
    n = 0
    for key in op[1]:
        dkey = DATA + key
        if store.live(dkey) is not None:
            store.remove(dkey)
            n += 1
    return n


def mset(store: Store, op: list) -> None:
    """[MSET, [key, value, ...], ttl_ms]: every pair, in this message's batch."""
    _, flat, ttl_ms = op
    expiry = store.deadline(ttl_ms)
    put = store.put
    for i in range(0, len(flat), 2):
        value = flat[i + 1]
        if type(value) is not bytes:
            raise TypeError("value must be bytes")
        put(DATA + flat[i], value, expiry)
    return None


def _remembered(store: Store, uid: bytes | None) -> Any:
    if uid is None:
        return MISSING
    raw = store.pend.get(UID + uid, MISSING)
    if raw is MISSING:
        raw = store.db.get(UID + uid, verify_checksums=True)
    if raw is None or raw is MISSING:
        return MISSING
    assert isinstance(raw, bytes)
    return int(raw[1:]) if raw[:1] == b"i" else raw == b"t"


def _remember(store: Store, uid: bytes | None, result: int | bool) -> None:
    if uid is None:
        return
    enc = b"i%d" % result if type(result) is int else (b"t" if result else b"f")
    store.pend[UID + uid] = enc
    store.pend[expiry_key(store.now + UID_KEEP_MS, UID + uid)] = b""


def incr(store: Store, op: list) -> int | ErrorReply:
    """[INCR, key, by, uid]: the new value; missing counts as 0; keeps the TTL."""
    _, key, by, uid = op
    if type(by) is not int:
        raise TypeError("increment must be an integer")
    done = _remembered(store, uid)
    if done is not MISSING:
        return done  # type: ignore[no-any-return]
    dkey = DATA + key
    raw = store.live(dkey)
    expiry = 0
    current: int | None = 0
    if raw is not None:
        expiry = expiry_of(raw)
        text = value_of(raw)
        current = int(text) if _INT.fullmatch(text) else None
        # 19 digits can exceed int64: such a value is not a counter either
        if current is None or not INT64_MIN <= current <= INT64_MAX:
            return store.error(errors.NotAnInteger, "value is not a 64-bit integer")
    new = current + by  # type: ignore[operator]
    if not INT64_MIN <= new <= INT64_MAX:
        return store.error(errors.Overflow, "increment would overflow a signed 64-bit integer")
    store.put(dkey, b"%d" % new, expiry)
    _remember(store, uid, new)
    return new  # type: ignore[no-any-return]


def expire(store: Store, op: list) -> bool:
    """[EXPIRE, key, ttl_ms]: whether the key exists; ttl <= 0 deletes it."""
    _, key, ttl_ms = op
    if type(ttl_ms) is not int:
        raise TypeError("ttl must be an integer of ms")
    dkey = DATA + key
    raw = store.live(dkey)
    if raw is None:
        return False
    if ttl_ms <= 0:
        store.remove(dkey)
    else:
        store.put(dkey, value_of(raw), store.deadline(ttl_ms))
    return True


def persist(store: Store, op: list) -> bool:
    """[PERSIST, key]: whether it had an expiry (now removed)."""
    dkey = DATA + op[1]
    raw = store.live(dkey)
    if raw is None or raw[0] != EXPIRING:
        return False
    store.put(dkey, raw[9:], 0)
    return True


def cas(store: Store, op: list) -> bool:
    """[CAS, key, expected|nil, new, uid]: whether it swapped."""
    _, key, expected, new, uid = op
    if type(new) is not bytes or (expected is not None and type(expected) is not bytes):
        raise TypeError("expected and new must be bytes (expected may be nil)")
    done = _remembered(store, uid)
    if done is not MISSING:
        return done  # type: ignore[no-any-return]
    dkey = DATA + key
    raw = store.live(dkey)
    current = None if raw is None else value_of(raw)
    ok = current == expected
    if ok:
        store.put(dkey, new, 0)
    _remember(store, uid, ok)
    return ok
