"""One shard's data: a LevelDB (plyvel), the overlay of the message being
applied, the one write batch, expiry sweeps and recovery after a failed write.
The key layout is in ``encoding.py``; the op handlers in ``reads.py``,
``writes.py`` and ``admin.py``, gathered in ``handlers.py``'s one table.

Reads hide an expired value at once; ``sweep()`` deletes expired data and old
request uids through the index, a bounded amount at a time, between messages.

``apply(ops)`` runs every op of one message against an overlay of the writes
made so far in that message, then commits the overlay as ONE write batch
(``_commit``, the only place that writes; ``settle`` resolves the answers
that depended on it). So later ops see earlier ones, nothing is acknowledged
before it is written, and a message's writes are one atomic batch, except
that a SCAN or SNAPSHOT_OPEN commits what came before it first, so that it
sees those writes (the router's per-shard MSET part is never split: it is
one op). ``apply_some`` stops early, after the op that took the message's
values read and written past a byte budget (the worker's segments: big
values are answered, and committed, a few at a time).
"""
from __future__ import annotations

import os
import time
import threading
from typing import Any, Callable

import plyvel

from .. import errors
from ..protocol import MAX_TTL_MS, ErrorReply
from .encoding import DATA, EXPIRING, EXPIRY, MISSING, PLAIN, expiry_key

Handler = Callable[["Store", list], Any]


class _Closed:
    """Stands for a LevelDB that could not be reopened: every use raises."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise plyvel.IOError("the shard's LevelDB is closed after a storage failure; retrying")


class Store:
    """A shard's LevelDB and what its op handlers share. ``handlers`` is the
    table ``opcode -> handler(store, op)`` that ``apply`` runs."""

    def __init__(self, path: str, handlers: dict[int, Handler], *, shard: int = 0,
                 sync: bool = False, write_buffer_mb: float = 1.0,
                 block_cache_mb: float = 1.0, compression: bool = True,
                 max_open_files: int = 64, create: bool = False) -> None:
        self.path, self.shard = path, shard
        self.sync = sync
        # only a new data folder's shards are created (datadir.create_shards):
        # a shard folder that went missing is an error, never a new empty shard
        self._options = dict(
            create_if_missing=create, paranoid_checks=True,
            write_buffer_size=int(write_buffer_mb * 2**20),
            lru_cache_size=int(block_cache_mb * 2**20),
            compression="snappy" if compression else None,
            max_open_files=max_open_files, bloom_filter_bits=10,
        )
        self.db = plyvel.DB(path, **self._options)
        self._options["create_if_missing"] = False   # a reopen never creates
        self.lock_id = self._lock_id()   # (dev, inode) of LevelDB's LOCK file: the folder's identity
        self.vanished = False            # the folder was deleted or replaced under us
        self.write_failed_at = 0.0       # monotonic time of the last failed write, 0 if none
        self.background = 0              # threads using self.db (compaction): no reopen meanwhile
        self.op_counts = [0] * 32        # ops applied, by opcode (admin.stats reports them)
        self.error_counts: dict[int, int] = {}   # error code -> errors answered
        self.now = 0                     # ms, fixed for the whole message
        self.pend: dict[bytes, bytes | None] = {}   # the message's writes so far (None: delete)
        self.touched = False             # did the op being applied read or write the overlay
        self.moved = 0                   # bytes of values the ops so far read or wrote (handlers add)
        self._results: list = []         # the answers of the message being applied
        self._dirty: list[int] = []      # which of them depend on the next commit
        self.handlers = handlers
        # admin state (admin.py): snapshots by id, the compaction thread and its outcome
        self.snapshots: dict[int, list] = {}     # id -> [plyvel snapshot, last used (monotonic)]
        self.compaction: dict[str, Any] = {"running": False, "runs": 0}
        self.compact_thread: threading.Thread | None = None
        self.key_count: tuple[float, int, bool] = (-1e9, 0, False)   # (when, count, estimated)
        # resharding (moving.py): the ring of the shard's epoch, what it owns
        # (None: no check), a move in progress, the cleanup's position
        self.ring: Any = None
        self.epoch = 1
        self.owner: Any = None
        self.move: Any = None
        self.cleanup_at: bytes | None = None
        self.gate: Callable[[Store, list], Any] | None = None   # fencing.fence, when on
        # cluster mode: writes are refused after this CLOCK_MONOTONIC time (the
        # node's etcd lease may have expired; ``fencing.lease_fence``), and why
        self.writable_until: float | None = None
        self.unwritable_why = ""
        self.handed_off_at: float | None = None   # the shard moved to another node (handoff.py)
        self.fenced_id: str | None = None         # fenced for this whole-shard move (handoff.py)
        self.replica: Any = None         # its part in the shard's replication (replication.py)
        self.via_replica = False         # the message came on a replica-read link

    def error(self, cls: type[errors.ServerError], msg: str) -> ErrorReply:
        """An error result, counted for STATS."""
        self.error_counts[cls.code] = self.error_counts.get(cls.code, 0) + 1
        return ErrorReply(cls.code, msg)

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
        return self.apply_some(ops, 0, len(ops), -1)[0]

    def apply_some(self, ops: list, start: int, most: int, max_bytes: int) -> tuple[list, int]:
        """Run ``ops[start:]`` as ``apply`` does, but at most ``most`` of them,
        stopping after the op that took ``moved`` past ``max_bytes`` (-1: no
        limit); commit; return their results and where it stopped."""
        self.now = int(time.time() * 1000)
        self.pend = {}
        self.moved = 0
        results: list = []
        dirty: list[int] = []            # ops whose answer depends on the next commit
        self._results, self._dirty = results, dirty
        handlers = self.handlers
        counts = self.op_counts
        gate = self.gate
        end = min(len(ops), start + most)
        for i in range(start, end):
            op = ops[i]
            self.touched = False
            try:
                handler = handlers.get(op[0])
                if handler is None:
                    results.append(self.error(errors.BadRequest, "unknown shard op %r" % (op[0],)))
                    continue
                if gate is not None:
                    refused = gate(self, op)
                    if refused is not None:
                        results.append(refused)
                        continue
                counts[op[0]] += 1
                results.append(handler(self, op))
                gate = self.gate                 # (a reshard op may have set it)
            except (TypeError, IndexError, ValueError, AttributeError) as exc:
                results.append(self.error(errors.BadRequest, "bad arguments: %s" % exc))
            except plyvel.Error as exc:
                results.append(self.error(errors.StorageError, "storage: %s" % exc))
            if self.touched:
                dirty.append(i - start)
            if self.moved > max_bytes >= 0:
                end = i + 1
                break
        self.settle()
        return results, end

    def settle(self) -> ErrorReply | None:
        """Commit this message's writes so far (at its end, or before a scan or
        snapshot must see them). If the commit fails, every answer that
        depended on it becomes the failure: nothing unwritten is acknowledged.
        Cluster mode: a commit that ended past the node's write deadline (its
        lease may have expired meanwhile) acknowledges nothing either: those
        answers become ``OutcomeUnknown``."""
        dirty = self._dirty
        failure = self._commit() if self.pend else None
        if failure is None and dirty and self.writable_until is not None \
                and time.monotonic() > self.writable_until:
            failure = self.error(errors.OutcomeUnknown, "written, but past the node's write "
                                 "deadline (%s): outcome unknown" % self.unwritable_why)
            for i in dirty:
                self._results[i] = failure
            failure = None            # (written: what follows in the message may go on)
        elif failure is not None:
            for i in dirty:
                self._results[i] = failure
        dirty.clear()
        return failure

    def _lock_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.path, "LOCK"))
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def still_there(self) -> bool:
        """Is the shard's folder still the one it opened? Deleted (or replaced)
        while open, LevelDB would go on appending to logs no longer in any
        folder: acknowledged writes that a restart cannot find. One stat."""
        if not self.vanished and self._lock_id() != self.lock_id:
            self.vanished = True
        return not self.vanished

    def _commit(self) -> ErrorReply | None:
        """Write the overlay as one batch; on failure nothing of it is written."""
        pend, self.pend = self.pend, {}
        if self.vanished:
            return self._gone()
        if self.write_failed_at:  # a failed append may have left a torn record: reopen first
            return self.error(errors.StorageError, "write not applied: the shard is recovering "
                        "from a failed write (disk full?)")
        replica, seq = self.replica, 0
        try:
            with self.db.write_batch(sync=self.sync) as wb:
                for k, v in pend.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
                if replica is not None:      # numbered, in the same write batch
                    seq = replica.stamp(wb)
        except plyvel.Error as exc:
            if seq:
                replica.seq -= 1
            self.write_failed_at = time.monotonic()
            return self.error(errors.StorageError, "write failed, not applied: %s" % exc)
        self.write_failed_at = 0.0
        if not self.still_there():   # after the write: a delete before it is never acknowledged
            return self._gone()
        if replica is not None:      # its answers wait for the copies (``replication.hold``)
            replica.replicate(list(pend.items()), seq)
        return None

    def _gone(self) -> ErrorReply:
        return self.error(errors.StorageError, "write not kept: shard %d's folder %s was "
                          "deleted or replaced while it ran" % (self.shard, self.path))

    def load(self, dkey: bytes) -> bytes | None:
        """The raw stored value of a data key, as this message sees it."""
        raw = self.pend.get(dkey, MISSING)
        if raw is not MISSING:
            self.touched = True
            return raw  # type: ignore[return-value]
        return self.db.get(dkey, verify_checksums=True)

    def live(self, dkey: bytes) -> bytes | None:
        """The raw value if the key exists and has not expired."""
        raw = self.load(dkey)
        if raw is None or raw[0] == 0:
            return raw
        return raw if int.from_bytes(raw[1:9], "big") > self.now else None

    def put(self, dkey: bytes, value: bytes, expiry_ms: int) -> None:
        """Store ``value`` under the data key in this message's overlay."""
        self.touched = True
        self.moved += len(value)
        if expiry_ms:
            self.pend[dkey] = b"\x01" + expiry_ms.to_bytes(8, "big") + value
            self.pend[expiry_key(expiry_ms, dkey)] = b""
        else:
            self.pend[dkey] = PLAIN + value

    def remove(self, dkey: bytes) -> None:
        """Delete the data key in this message's overlay."""
        self.touched = True
        self.pend[dkey] = None

    def deadline(self, ttl_ms: int | None) -> int:
        """The absolute expiry (ms) of a ttl from now; 0 for none."""
        if ttl_ms is None:
            return 0
        if type(ttl_ms) is not int or not 0 < ttl_ms <= MAX_TTL_MS:
            raise ValueError("ttl must be a positive number of ms")
        return self.now + ttl_ms

    # -- background --------------------------------------------------------------
    def sweep(self, budget: int = 1000) -> int:
        """Delete up to ``budget`` expired entries; return how many were examined."""
        if self.write_failed_at or self.vanished:  # no writes until recover() has reopened
            return 0
        now = int(time.time() * 1000)
        stop = EXPIRY + now.to_bytes(8, "big")
        n = 0
        try:
            wb = self.db.write_batch(sync=self.sync)
            for ikey in self.db.iterator(start=EXPIRY, stop=stop, include_value=False):
                if n >= budget:
                    break
                n += 1
                wb.delete(ikey)
                target = ikey[9:]
                if target[:1] == DATA:
                    raw = self.db.get(target)
                    if raw is not None and raw[0] == EXPIRING and raw[1:9] == ikey[1:9]:
                        wb.delete(target)
                else:
                    wb.delete(target)
            if n:
                wb.write()
        except plyvel.Error:
            return 0
        return n
