"""The shard's write ops. ``Store`` mixes them in; every change goes through
``_store``/``_remove`` into the message's overlay, which ``Store._commit``
writes as one batch, so nothing here touches the LevelDB directly."""
from __future__ import annotations

import re
from typing import Any

from . import errors
from .protocol import INT64_MAX, INT64_MIN, NX, XX, ErrorReply
from .shardops import _EXPIRING, _MISSING, _err, value_of

_UID_KEEP_MS = 10 * 60 * 1000          # how long a request uid is remembered
_INT = re.compile(rb"-?(0|[1-9][0-9]{0,18})")


class WriteOps:
    now: int
    db: Any
    _pend: dict

    def _live(self, dkey: bytes) -> bytes | None:
        raise NotImplementedError

    def _store(self, dkey: bytes, value: bytes, expiry_ms: int) -> None:
        raise NotImplementedError

    def _remove(self, dkey: bytes) -> None:
        raise NotImplementedError

    def _expiry_of(self, raw: bytes) -> int:
        raise NotImplementedError

    def _deadline(self, ttl_ms: int | None) -> int:
        raise NotImplementedError

    def _set(self, op: list) -> bool | None:
        """[SET, key, value, ttl_ms, flags]: None, or whether it wrote with NX/XX."""
        _, key, value, ttl_ms, flags = op
        if type(value) is not bytes:
            raise TypeError("value must be bytes")
        dkey = b"d" + key
        if flags:
            exists = self._live(dkey) is not None
            if (flags & NX and exists) or (flags & XX and not exists):
                return False
        self._store(dkey, value, self._deadline(ttl_ms))
        return True if flags else None

    def _del(self, op: list) -> int:
        """[DEL, [key, ...]]: how many existed."""
        n = 0
        for key in op[1]:
            dkey = b"d" + key
            if self._live(dkey) is not None:
                self._remove(dkey)
                n += 1
        return n

    def _mset(self, op: list) -> None:
        """[MSET, [key, value, ...], ttl_ms]: every pair, in this message's batch."""
        _, flat, ttl_ms = op
        expiry = self._deadline(ttl_ms)
        store = self._store
        for i in range(0, len(flat), 2):
            value = flat[i + 1]
            if type(value) is not bytes:
                raise TypeError("value must be bytes")
            store(b"d" + flat[i], value, expiry)
        return None

    def _remembered(self, uid: bytes | None) -> Any:
        if uid is None:
            return _MISSING
        raw = self._pend.get(b"u" + uid, _MISSING)
        if raw is _MISSING:
            raw = self.db.get(b"u" + uid, verify_checksums=True)
        if raw is None or raw is _MISSING:
            return _MISSING
        return int(raw[1:]) if raw[:1] == b"i" else raw == b"t"

    def _remember(self, uid: bytes | None, result: int | bool) -> None:
        if uid is None:
            return
        enc = b"i%d" % result if type(result) is int else (b"t" if result else b"f")
        self._pend[b"u" + uid] = enc
        keep = (self.now + _UID_KEEP_MS).to_bytes(8, "big")
        self._pend[b"x" + keep + b"u" + uid] = b""

    def _incr(self, op: list) -> int | ErrorReply:
        """[INCR, key, by, uid]: the new value; missing counts as 0; keeps the TTL."""
        _, key, by, uid = op
        if type(by) is not int:
            raise TypeError("increment must be an integer")
        done = self._remembered(uid)
        if done is not _MISSING:
            return done
        dkey = b"d" + key
        raw = self._live(dkey)
        expiry = 0
        current = 0
        if raw is not None:
            expiry = self._expiry_of(raw)
            text = value_of(raw)
            current = int(text) if _INT.fullmatch(text) else None
            # 19 digits can exceed int64: such a value is not a counter either
            if current is None or not INT64_MIN <= current <= INT64_MAX:
                return _err(errors.NotAnInteger, "value is not a 64-bit integer")
        new = current + by
        if not INT64_MIN <= new <= INT64_MAX:
            return _err(errors.Overflow, "increment would overflow a signed 64-bit integer")
        self._store(dkey, b"%d" % new, expiry)
        self._remember(uid, new)
        return new

    def _expire(self, op: list) -> bool:
        """[EXPIRE, key, ttl_ms]: whether the key exists; ttl <= 0 deletes it."""
        _, key, ttl_ms = op
        if type(ttl_ms) is not int:
            raise TypeError("ttl must be an integer of ms")
        dkey = b"d" + key
        raw = self._live(dkey)
        if raw is None:
            return False
        value = value_of(raw)
        if ttl_ms <= 0:
            self._remove(dkey)
        else:
            self._store(dkey, value, self._deadline(ttl_ms))
        return True

    def _persist(self, op: list) -> bool:
        dkey = b"d" + op[1]
        raw = self._live(dkey)
        if raw is None or raw[0] != _EXPIRING:
            return False
        self._store(dkey, raw[9:], 0)
        return True

    def _cas(self, op: list) -> bool:
        """[CAS, key, expected|nil, new, uid]: whether it swapped."""
        _, key, expected, new, uid = op
        if type(new) is not bytes or (expected is not None and type(expected) is not bytes):
            raise TypeError("expected and new must be bytes (expected may be nil)")
        done = self._remembered(uid)
        if done is not _MISSING:
            return done
        dkey = b"d" + key
        raw = self._live(dkey)
        current = None if raw is None else value_of(raw)
        ok = current == expected
        if ok:
            self._store(dkey, new, 0)
        self._remember(uid, ok)
        return ok
