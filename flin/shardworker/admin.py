"""A shard's admin ops, each ``handler(store, op) -> result`` like the data
ops: its counters (STATS), snapshots for backups, compaction. They run in the
worker's one loop like any op; their state lives on the ``Store``. Only
compaction takes long: it runs
``compact_range()`` in a thread (plyvel releases the GIL inside LevelDB, and
LevelDB is thread-safe), and STATS reports it running, then its outcome.

Snapshots: ``SNAPSHOT_OPEN`` takes a LevelDB snapshot (after committing what
the message wrote so far) and names it by a random id; ``SNAPSHOT_READ`` pages
raw entries of every prefix from it; one unused for ``SNAPSHOT_IDLE_S`` is
released by ``expire_snapshots()``, which the worker calls between messages;
``close()`` releases them all and waits for a compaction before the LevelDB closes.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import plyvel

from .. import errors
from ..protocol import MAX_SCAN_LIMIT, MAX_SNAPSHOT_BYTES, OP_NAMES, SNAPSHOT_IDLE_S
from .encoding import DATA
from .store import Store

log = logging.getLogger("flin.shard")

_KEYS_COUNTED = 10_000    # keys counted one by one; past this the count is estimated
_KEYS_CACHE_S = 2.0       # s a key count is reused (scrapes and --watch ask often)


# -- stats -----------------------------------------------------------------------

def stats(store: Store, op: list) -> dict:
    """[STATS] -> the shard's counters, key count, disk use, compaction, snapshots."""
    keys, estimated = count_keys(store)
    comp = dict(store.compaction)
    if comp["running"]:
        comp["elapsed_s"] = time.time() - comp["started"]
    try:
        ldb = store.db.get_property(b"leveldb.stats").decode()
    except (plyvel.Error, AttributeError, RuntimeError):
        ldb = ""
    return {
        "pid": os.getpid(),
        "ops": {OP_NAMES.get(code, str(code)): n for code, n in enumerate(store.op_counts) if n},
        "errors": {type(errors.error_for_code(c, "")).__name__: n
                   for c, n in store.error_counts.items()},
        "keys": keys, "keys_estimated": estimated,
        "disk_bytes": disk_bytes(store),
        "compaction": comp,
        "snapshots": len(store.snapshots),
        "write_failed": bool(store.write_failed_at),
        "leveldb_stats": ldb,
    }


def count_keys(store: Store) -> tuple[int, bool]:
    """Data keys and whether that is an estimate. Up to ``_KEYS_COUNTED``
    they are counted; past that, the count of the first ones is scaled by
    LevelDB's approximate on-disk size of all data over theirs (keys of
    similar size spread evenly). Expired keys not yet swept count."""
    at, n, estimated = store.key_count
    if time.monotonic() - at < _KEYS_CACHE_S:
        return n, estimated
    db = store.db
    n, last, sample = 0, None, 0
    try:
        for key, value in db.iterator(prefix=DATA):
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
        return store.key_count[1], True
    store.key_count = (time.monotonic(), n, estimated)
    return n, estimated


def disk_bytes(store: Store) -> int:
    total = 0
    try:
        for entry in os.scandir(store.path):
            if entry.is_file(follow_symlinks=False):
                total += entry.stat().st_size
    except OSError:
        pass
    return total


# -- compaction ------------------------------------------------------------------

def compact(store: Store, op: list) -> bool:
    """[COMPACT]: True if a compaction started now, False if one runs."""
    if store.compact_thread is not None and store.compact_thread.is_alive():
        return False
    store.compaction.update(running=True, started=time.time(), error=None,
                           bytes_before=disk_bytes(store))
    store.background += 1
    store.compact_thread = threading.Thread(target=_run_compaction, args=(store,), daemon=True,
                                    name="flin-compact-%d" % store.shard)
    store.compact_thread.start()
    log.debug("shard %d: compaction started (%d bytes on disk)", store.shard,
             store.compaction["bytes_before"])
    return True


def _run_compaction(store: Store) -> None:
    t0 = time.monotonic()
    error = None
    try:
        store.db.compact_range()
    except Exception as exc:  # reported in stats; the worker carries on
        error = "%s: %s" % (type(exc).__name__, exc)
    finally:
        store.background -= 1
    after = disk_bytes(store)
    store.compaction.update(running=False, runs=store.compaction["runs"] + 1, error=error,
                           seconds=time.monotonic() - t0, finished=time.time(),
                           bytes_after=after)
    if error:
        log.error("shard %d: compaction failed: %s", store.shard, error)
    else:
        log.debug("shard %d: compaction done in %.2fs, %d -> %d bytes on disk", store.shard,
                 time.monotonic() - t0, store.compaction["bytes_before"], after)


# -- snapshots -------------------------------------------------------------------

def snapshot_open(store: Store, op: list) -> int:
    """[SNAPSHOT_OPEN] -> id. What this message wrote before is committed first."""
    if store.pend:
        failure = store.settle()
        if failure is not None:
            return failure  # type: ignore[return-value]
    sid = int.from_bytes(os.urandom(6), "big")
    store.snapshots[sid] = [store.db.snapshot(), time.monotonic()]
    log.debug("shard %d: snapshot %x opened", store.shard, sid)
    return sid


def snapshot_read(store: Store, op: list) -> Any:
    """[SNAPSHOT_READ, id, after|nil, limit, max_bytes] -> [[k, v, ...], last|nil]."""
    _, sid, after, limit, max_bytes = op
    entry = store.snapshots.get(sid)
    if entry is None:
        return store.error(errors.BadRequest, "shard %d has no snapshot %r (released after %.0fs "
                    "idle, or the shard restarted)" % (store.shard, sid, SNAPSHOT_IDLE_S))
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
        _release(store, sid)
        return store.error(errors.StorageError, "snapshot lost: %s" % exc)
    entry[1] = time.monotonic()
    return [out, last]


def snapshot_close(store: Store, op: list) -> bool:
    """[SNAPSHOT_CLOSE, id] -> whether it was open."""
    if op[1] not in store.snapshots:
        return False
    _release(store, op[1])
    log.debug("shard %d: snapshot %x closed", store.shard, op[1])
    return True


def _release(store: Store, sid: int) -> None:
    snap = store.snapshots.pop(sid)[0]
    try:
        snap.release()
    except Exception:  # its LevelDB is already closed
        pass


def expire_snapshots(store: Store) -> None:
    """Release snapshots unused for ``SNAPSHOT_IDLE_S``: one warning for all
    those released at once (a client may have opened thousands)."""
    if not store.snapshots:
        return
    now = time.monotonic()
    idle = [(sid, now - used) for sid, (_, used) in store.snapshots.items()
            if now - used > SNAPSHOT_IDLE_S]
    if not idle:
        return
    for sid, _ in idle:
        _release(store, sid)
    log.warning("shard %d: released %d snapshot(s) idle for %.0fs or more (%x%s)", store.shard,
                len(idle), min(s for _, s in idle), idle[0][0], ", ..." if len(idle) > 1 else "")


def close(store: Store) -> None:
    """Before the LevelDB closes: release snapshots, wait for a compaction."""
    for sid in list(store.snapshots):
        _release(store, sid)
    if store.compact_thread is not None and store.compact_thread.is_alive():
        log.info("shard %d: waiting for the compaction to finish", store.shard)
        store.compact_thread.join()
