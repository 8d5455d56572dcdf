"""The shard's read ops. ``Store`` mixes them in; they read through
``_live`` (the message's overlay first, then the LevelDB) and never write."""
from __future__ import annotations

import os
from typing import Any

from .shardops import _EXPIRING, value_of


class ReadOps:
    now: int
    db: Any
    _pend: dict

    def _live(self, dkey: bytes) -> bytes | None:
        raise NotImplementedError

    def _expiry_of(self, raw: bytes) -> int:
        raise NotImplementedError

    def settle(self) -> Any:
        raise NotImplementedError

    def _ping(self, op: list) -> int:
        return os.getpid()

    def _get(self, op: list) -> bytes | list | None:
        """[GET, key] -> value or nil; [GET, key, 1] -> [value, expiry ms or 0] or nil
        (the router's read cache asks for the expiry)."""
        raw = self._live(b"d" + op[1])
        if raw is None:
            return None
        if len(op) > 2:
            return [raw[1:], 0] if raw[0] == 0 else [raw[9:], int.from_bytes(raw[1:9], "big")]
        return value_of(raw)

    def _mget(self, op: list) -> list:
        """[MGET, [key, ...]]: values in order, nil for each missing key."""
        live = self._live
        out = []
        for key in op[1]:
            raw = live(b"d" + key)
            out.append(None if raw is None else value_of(raw))
        return out

    def _exists(self, op: list) -> bool:
        return self._live(b"d" + op[1]) is not None

    def _ttl(self, op: list) -> int:
        raw = self._live(b"d" + op[1])
        if raw is None:
            return -2
        exp = self._expiry_of(raw)
        return exp - self.now if exp else -1

    def _scan(self, op: list) -> list:
        """[SCAN, prefix, start_after, limit, values] -> [flat items, last examined key or nil]."""
        _, prefix, start_after, limit, values = op
        if self._pend:                   # scans see this message's earlier writes
            failure = self.settle()
            if failure is not None:
                return failure  # type: ignore[return-value]
        dprefix = b"d" + prefix
        start = dprefix
        if start_after is not None and b"d" + start_after >= dprefix:
            start = b"d" + start_after + b"\x00"
        out: list = []
        found = examined = 0
        last = None
        now = self.now
        for dkey, raw in self.db.iterator(start=start, verify_checksums=True):
            if not dkey.startswith(dprefix):
                return [out, None]
            if found == limit or examined >= 10 * limit + 100:
                return [out, last]
            examined += 1
            last = dkey[1:]
            if raw[0] == _EXPIRING and int.from_bytes(raw[1:9], "big") <= now:
                continue
            found += 1
            out.append(last)
            if values:
                out.append(value_of(raw))
        return [out, None]
