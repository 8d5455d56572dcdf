"""A shard's admin ops: its counters (STATS), snapshots for backups, compaction.

``Admin(store, shard)`` adds its handlers to ``store.handlers``, so they run in
the worker's one loop like any op. Only compaction takes long: it runs
``compact_range()`` in a thread (plyvel releases the GIL inside LevelDB, and
LevelDB is thread-safe), and STATS reports it running, then its outcome.

Snapshots: ``SNAPSHOT_OPEN`` takes a LevelDB snapshot (after committing what
the message wrote so far) and names it by a random id; ``SNAPSHOT_READ`` pages
raw entries of every prefix from it; one unused for ``SNAPSHOT_IDLE_S`` is
released by ``expire()``, which the worker calls between messages.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import plyvel

from . import errors
from .protocol import (
    COMPACT, MAX_SCAN_LIMIT, MAX_SNAPSHOT_BYTES, OP_NAMES, SNAPSHOT_CLOSE, SNAPSHOT_IDLE_S,
    SNAPSHOT_OPEN, SNAPSHOT_READ, STATS,
)
from .store import ERROR_COUNTS, Store, _err

log = logging.getLogger("flin.shard")

_KEYS_COUNTED = 10_000    # keys counted one by one; past this the count is estimated
_KEYS_CACHE_S = 2.0       # s a key count is reused (scrapes and --watch ask often)


class Admin:
    """The admin handlers of one shard's ``Store``."""

    def __init__(self, store: Store, shard: int) -> None:
        self.store, self.shard = store, shard
        self.snapshots: dict[int, list] = {}     # id -> [plyvel snapshot, last used (monotonic)]
        self.compaction: dict[str, Any] = {"running": False, "runs": 0}
        self._thread: threading.Thread | None = None
        self._keys: tuple[float, int, bool] = (-1e9, 0, False)
        store.handlers.update({
            STATS: self._stats, COMPACT: self._compact, SNAPSHOT_OPEN: self._snapshot_open,
            SNAPSHOT_READ: self._snapshot_read, SNAPSHOT_CLOSE: self._snapshot_close,
        })

    # -- stats -----------------------------------------------------------------------
    def _stats(self, op: list) -> dict:
        store = self.store
        keys, estimated = self.count_keys()
        comp = dict(self.compaction)
        if comp["running"]:
            comp["elapsed_s"] = time.time() - comp["started"]
        try:
            ldb = store.db.get_property(b"leveldb.stats").decode()
        except (plyvel.Error, AttributeError, RuntimeError):
            ldb = ""
        return {
            "pid": os.getpid(),
            "ops": {OP_NAMES.get(code, str(code)): n for code, n in enumerate(store.op_counts) if n},
            "errors": {type(errors.error_for_code(c, "")).__name__: n for c, n in ERROR_COUNTS.items()},
            "keys": keys, "keys_estimated": estimated,
            "disk_bytes": self.disk_bytes(),
            "compaction": comp,
            "snapshots": len(self.snapshots),
            "write_failed": bool(store.write_failed_at),
            "leveldb_stats": ldb,
        }

    def count_keys(self) -> tuple[int, bool]:
        """Data keys and whether that is an estimate. Up to ``_KEYS_COUNTED``
        they are counted; past that, the count of the first ones is scaled by
        LevelDB's approximate on-disk size of all data over theirs (keys of
        similar size spread evenly). Expired keys not yet swept count."""
        at, n, estimated = self._keys
        if time.monotonic() - at < _KEYS_CACHE_S:
            return n, estimated
        db = self.store.db
        n, last, sample = 0, None, 0
        try:
            for key, value in db.iterator(prefix=b"d"):
                n += 1
                if n <= 100:
                    sample += len(key) + len(value)
                if n == _KEYS_COUNTED:
                    last = key
                    break
            estimated = last is not None
            if estimated:
                total = db.approximate_size(b"d", b"e")
                part = db.approximate_size(b"d", last)
                if part > 0 and total > part:
                    n = int(n * total / part)
                elif total > part:  # the first keys are still in the memtable
                    n += int(total / max(1, sample // 100))
        except (plyvel.Error, RuntimeError):
            return self._keys[1], True
        self._keys = (time.monotonic(), n, estimated)
        return n, estimated

    def disk_bytes(self) -> int:
        total = 0
        try:
            for entry in os.scandir(self.store.path):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat().st_size
        except OSError:
            pass
        return total

    # -- compaction ------------------------------------------------------------------
    def _compact(self, op: list) -> bool:
        """[COMPACT]: True if a compaction started now, False if one runs."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self.compaction.update(running=True, started=time.time(), error=None,
                               bytes_before=self.disk_bytes())
        self.store.background += 1
        self._thread = threading.Thread(target=self._run_compaction, daemon=True,
                                        name="flin-compact-%d" % self.shard)
        self._thread.start()
        log.info("shard %d: compaction started (%d bytes on disk)", self.shard,
                 self.compaction["bytes_before"])
        return True

    def _run_compaction(self) -> None:
        t0 = time.monotonic()
        error = None
        try:
            self.store.db.compact_range()
        except Exception as exc:  # reported in stats; the worker carries on
            error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            self.store.background -= 1
        after = self.disk_bytes()
        self.compaction.update(running=False, runs=self.compaction["runs"] + 1, error=error,
                               seconds=time.monotonic() - t0, finished=time.time(),
                               bytes_after=after)
        if error:
            log.error("shard %d: compaction failed: %s", self.shard, error)
        else:
            log.info("shard %d: compaction done in %.2fs, %d -> %d bytes on disk", self.shard,
                     time.monotonic() - t0, self.compaction["bytes_before"], after)

    # -- snapshots -------------------------------------------------------------------
    def _snapshot_open(self, op: list) -> int:
        """[SNAPSHOT_OPEN] -> id. What this message wrote before is committed first."""
        store = self.store
        if store._pend:
            failure = store.settle()
            if failure is not None:
                return failure  # type: ignore[return-value]
        sid = int.from_bytes(os.urandom(6), "big")
        self.snapshots[sid] = [store.db.snapshot(), time.monotonic()]
        log.info("shard %d: snapshot %x opened", self.shard, sid)
        return sid

    def _snapshot_read(self, op: list) -> Any:
        """[SNAPSHOT_READ, id, after|nil, limit, max_bytes] -> [[k, v, ...], last|nil]."""
        _, sid, after, limit, max_bytes = op
        entry = self.snapshots.get(sid)
        if entry is None:
            return _err(errors.BadRequest, "shard %d has no snapshot %r (released after %.0fs "
                        "idle, or the shard restarted)" % (self.shard, sid, SNAPSHOT_IDLE_S))
        limit = max(1, min(int(limit), MAX_SCAN_LIMIT))
        max_bytes = max(1, min(int(max_bytes), MAX_SNAPSHOT_BYTES))
        snap = entry[0]
        out: list = []
        size = 0
        last = None
        try:
            it = snap.iterator(verify_checksums=True) if after is None else \
                snap.iterator(start=after, include_start=False, verify_checksums=True)
            with it:
                for key, value in it:
                    out.append(key)
                    out.append(value)
                    size += len(key) + len(value)
                    if len(out) >= 2 * limit or size >= max_bytes:
                        last = key
                        break
        except RuntimeError as exc:  # the LevelDB was reopened under it
            self._release(sid)
            return _err(errors.StorageError, "snapshot lost: %s" % exc)
        entry[1] = time.monotonic()
        return [out, last]

    def _snapshot_close(self, op: list) -> bool:
        """[SNAPSHOT_CLOSE, id] -> whether it was open."""
        if op[1] not in self.snapshots:
            return False
        self._release(op[1])
        log.info("shard %d: snapshot %x closed", self.shard, op[1])
        return True

    def _release(self, sid: int) -> None:
        snap = self.snapshots.pop(sid)[0]
        try:
            snap.release()
        except Exception:  # its LevelDB is already closed
            pass

    def expire(self) -> None:
        """Release snapshots unused for ``SNAPSHOT_IDLE_S``."""
        if not self.snapshots:
            return
        now = time.monotonic()
        for sid, (_, used) in list(self.snapshots.items()):
            if now - used > SNAPSHOT_IDLE_S:
                log.warning("shard %d: snapshot %x idle for %.0fs: released",
                            self.shard, sid, now - used)
                self._release(sid)

    def close(self) -> None:
        """Before the LevelDB closes: release snapshots, wait for a compaction."""
        for sid in list(self.snapshots):
            self._release(sid)
        if self._thread is not None and self._thread.is_alive():
            log.info("shard %d: waiting for the compaction to finish", self.shard)
            self._thread.join()
