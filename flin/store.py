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
(``_commit``, the only place that writes; ``settle`` resolves the answers
that depended on it). So later ops see earlier ones, nothing is acknowledged
before it is written, and a message's writes are one atomic batch, except
that a SCAN or SNAPSHOT_OPEN commits what came before it first, so that it
sees those writes (the router's per-shard MSET part is never split: it is
one op).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import plyvel

from . import errors
from .protocol import (
    CAS, DEL, EXISTS, EXPIRE, GET, INCR, MGET, MSET, PERSIST, PING, SCAN, SET, TTL, ErrorReply,
)

from .readops import ReadOps
from .shardops import _EXPIRING, _MISSING, _PLAIN, ERROR_COUNTS, _err  # noqa: F401 (re-exported)
from .writeops import WriteOps


class _Closed:
    """Stands for a LevelDB that could not be reopened: every use raises."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise plyvel.IOError("the shard's LevelDB is closed after a storage failure; retrying")


class Store(ReadOps, WriteOps):
    """A shard's LevelDB: the overlay, the one write batch, expiry sweeps and
    recovery. The op handlers live in ``readops.py`` and ``writeops.py``."""

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
        self._results: list = []         # the answers of the message being applied
        self._dirty: list[int] = []      # which of them depend on the next commit
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
        dirty: list[int] = []            # ops whose answer depends on the next commit
        self._results, self._dirty = results, dirty
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
        self.settle()
        return results

    def settle(self) -> ErrorReply | None:
        """Commit this message's writes so far (at its end, or before a scan or
        snapshot must see them). If the commit fails, every answer that
        depended on it becomes the failure: nothing unwritten is acknowledged."""
        dirty = self._dirty
        failure = self._commit() if self._pend else None
        if failure is not None:
            for i in dirty:
                self._results[i] = failure
        dirty.clear()
        return failure

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
