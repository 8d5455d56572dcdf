"""One shard's data: a LevelDB (plyvel) and the handlers for every shard op.

Layout inside the LevelDB (one prefix byte per kind, so scans never mix them):

    b"d" + key               -> header + value      the user's data
    b"x" + expiry_ms(8, BE) + raw_key -> b""        expiry index, oldest first
    b"u" + request_uid       -> result               remembered INCR/CAS results

A value's header is one byte: ``\\x00`` (no expiry) or ``\\x01`` followed by the
absolute expiry in ms since the epoch (8 bytes, big-endian). Reads hide an
expired value at once; ``sweep()`` deletes expired data and old request
uids through the index, a bounded amount at a time, between messages.

``apply(ops)`` runs every op of one message against an overlay of the writes
made so far in that message, then commits the overlay as ONE write batch
(``_commit``, the only place that writes). So a message's writes are atomic,
later ops see earlier ones, and nothing is acknowledged before it is written.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

import plyvel

from . import errors
from .protocol import (
    CAS, DEL, EXISTS, EXPIRE, GET, INCR, INT64_MAX, INT64_MIN, MGET, MSET, NX, PERSIST,
    PING, SCAN, SET, TTL, XX, ErrorReply,
)

_PLAIN = b"\x00"
_EXPIRING = 1
_UID_KEEP_MS = 10 * 60 * 1000          # how long a request uid is remembered
_INT = re.compile(rb"-?(0|[1-9][0-9]{0,18})")
_MISSING = object()


ERROR_COUNTS: dict[int, int] = {}      # error code -> errors answered by this process's shard


def _err(cls: type[errors.ServerError], msg: str) -> ErrorReply:
    ERROR_COUNTS[cls.code] = ERROR_COUNTS.get(cls.code, 0) + 1
    return ErrorReply(cls.code, msg)


class _Closed:
    """Stands for a LevelDB that could not be reopened: every use raises."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise plyvel.IOError("the shard's LevelDB is closed after a storage failure; retrying")


class Store:
    """A shard's LevelDB and its op handlers."""

    def __init__(self, path: str, *, sync: bool = False,
                 write_buffer_mb: float = 1.0, block_cache_mb: float = 1.0,
                 compression: bool = True,
                 max_open_files: int = 64) -> None:
        self.path = path
        self.sync = sync
        self._options = dict(
            create_if_missing=True, paranoid_checks=True,
            write_buffer_size=int(write_buffer_mb * 2**20),
            lru_cache_size=int(block_cache_mb * 2**20),
            compression="snappy" if compression else None,
            max_open_files=max_open_files, bloom_filter_bits=10,
        )
        self.db = plyvel.DB(path, **self._options)
        self.write_failed_at = 0.0       # monotonic time of the last failed write, 0 if none
        self.background = 0              # threads using self.db (compaction): no reopen meanwhile
        self.op_counts = [0] * 32        # ops applied, by opcode (flin.admin reports them)
        self.now = 0                     # ms, fixed for the whole message
        self._pend: dict[bytes, bytes | None] = {}
        self._touched = False
        self.handlers: dict[int, Callable[[list], Any]] = {
            # reads
            PING: self._ping, GET: self._get, MGET: self._mget, EXISTS: self._exists,
            TTL: self._ttl, SCAN: self._scan,
            # writes
            SET: self._set, MSET: self._mset, DEL: self._del, INCR: self._incr,
            EXPIRE: self._expire,
            PERSIST: self._persist, CAS: self._cas,
        }

    def close(self) -> None:
        self.db.close()

    def recover(self) -> bool:
        """After a failed write LevelDB refuses every later write until it is
        reopened (its background error is sticky). Reopen, so that writes
        resume once the cause (a full disk) is gone. True if it reopened."""
        if not self.write_failed_at or time.monotonic() - self.write_failed_at < 1.0:
            return False
        if self.background:
            return False
        if not isinstance(self.db, _Closed) and not self._room_to_reopen():
            self.write_failed_at = time.monotonic()  # keep serving reads; look again later
            return False
        self.db.close()
        try:
            self.db = plyvel.DB(self.path, **self._options)
        except plyvel.Error:
            self.write_failed_at = time.monotonic()
            self.db = _Closed()  # type: ignore[assignment]
            return False
        self.write_failed_at = 0.0
        return True

    def _room_to_reopen(self) -> bool:
        """Whether the disk has room to reopen (LevelDB rewrites its logs as tables)."""
        try:
            st = os.statvfs(self.path)
            logs = sum(e.stat().st_size for e in os.scandir(self.path) if e.name.endswith(".log"))
        except OSError:
            return True
        return st.f_bavail * st.f_frsize > logs + (1 << 20)

    # -- the message: overlay, then one write batch ----------------------------
    def apply(self, ops: list) -> list:
        """Run one message's ops; return one result (or ErrorReply) per op."""
        self.now = int(time.time() * 1000)
        self._pend = {}
        results: list = []
        dirty: list[int] = []            # ops whose answer depends on the commit
        handlers = self.handlers
        counts = self.op_counts
        for i, op in enumerate(ops):
            self._touched = False
            try:
                handler = handlers.get(op[0])
                if handler is None:
                    results.append(_err(errors.BadRequest, "unknown shard op %r" % (op[0],)))
                    continue
                counts[op[0]] += 1
                results.append(handler(op))
            except (TypeError, IndexError, ValueError, AttributeError) as exc:
                results.append(_err(errors.BadRequest, "bad arguments: %s" % exc))
            except plyvel.Error as exc:
                results.append(_err(errors.StorageError, "storage: %s" % exc))
            if self._touched:
                dirty.append(i)
        if self._pend:
            failure = self._commit()
            if failure is not None:
                for i in dirty:
                    results[i] = failure
        return results

    def _commit(self) -> ErrorReply | None:
        """Write the overlay as one batch; on failure nothing of it is written."""
        pend, self._pend = self._pend, {}
        if self.write_failed_at:  # a failed append may have left a torn record: reopen first
            return _err(errors.StorageError, "write not applied: the shard is recovering "
                        "from a failed write (disk full?)")
        try:
            with self.db.write_batch(sync=self.sync) as wb:
                for k, v in pend.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except plyvel.Error as exc:
            self.write_failed_at = time.monotonic()
            return _err(errors.StorageError, "write failed, not applied: %s" % exc)
        self.write_failed_at = 0.0
        return None

    def _load(self, dkey: bytes) -> bytes | None:
        """The raw stored value of a data key, as this message sees it."""
        raw = self._pend.get(dkey, _MISSING)
        if raw is not _MISSING:
            self._touched = True
            return raw  # type: ignore[return-value]
        return self.db.get(dkey, verify_checksums=True)

    def _live(self, dkey: bytes) -> bytes | None:
        """The raw value if the key exists and has not expired."""
        raw = self._load(dkey)
        if raw is None or raw[0] == 0:
            return raw
        return raw if int.from_bytes(raw[1:9], "big") > self.now else None

    def _store(self, dkey: bytes, value: bytes, expiry_ms: int) -> None:
        self._touched = True
        if expiry_ms:
            self._pend[dkey] = b"\x01" + expiry_ms.to_bytes(8, "big") + value
            self._pend[b"x" + expiry_ms.to_bytes(8, "big") + dkey] = b""
        else:
            self._pend[dkey] = _PLAIN + value

    def _remove(self, dkey: bytes) -> None:
        self._touched = True
        self._pend[dkey] = None

    def _expiry_of(self, raw: bytes) -> int:
        return int.from_bytes(raw[1:9], "big") if raw[0] == _EXPIRING else 0

    def _deadline(self, ttl_ms: int | None) -> int:
        if ttl_ms is None:
            return 0
        if type(ttl_ms) is not int or not 0 < ttl_ms <= 100 * 365 * 86_400_000:
            raise ValueError("ttl must be a positive number of ms")
        return self.now + ttl_ms

    # -- reads -------------------------------------------------------------------
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
        return raw[1:] if raw[0] == 0 else raw[9:]

    def _mget(self, op: list) -> list:
        """[MGET, [key, ...]]: values in order, nil for each missing key."""
        live = self._live
        out = []
        for key in op[1]:
            raw = live(b"d" + key)
            out.append(None if raw is None else raw[1:] if raw[0] == 0 else raw[9:])
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
            failure = self._commit()
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
                out.append(raw[1:] if raw[0] == 0 else raw[9:])
        return [out, None]

    # -- writes ------------------------------------------------------------------
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
            text = raw[9:] if expiry else raw[1:]
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
        value = raw[9:] if raw[0] == _EXPIRING else raw[1:]
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
        current = None if raw is None else (raw[9:] if raw[0] == _EXPIRING else raw[1:])
        ok = current == expected
        if ok:
            self._store(dkey, new, 0)
        self._remember(uid, ok)
        return ok

    # -- background --------------------------------------------------------------
    def sweep(self, budget: int = 1000) -> int:
        """Delete up to ``budget`` expired entries; return how many were examined."""
        if self.write_failed_at:  # no writes until recover() has reopened the LevelDB
            return 0
        now = int(time.time() * 1000)
        stop = b"x" + now.to_bytes(8, "big")
        n = 0
        try:
            wb = self.db.write_batch(sync=self.sync)
            for ikey in self.db.iterator(start=b"x", stop=stop, include_value=False):
                if n >= budget:
                    break
                n += 1
                wb.delete(ikey)
                target = ikey[9:]
                if target[:1] == b"d":
                    raw = self.db.get(target)
                    if raw is not None and raw[0] == _EXPIRING and raw[1:9] == ikey[1:9]:
                        wb.delete(target)
                else:
                    wb.delete(target)
            if n:
                wb.write()
        except plyvel.Error:
            return 0
        return n
