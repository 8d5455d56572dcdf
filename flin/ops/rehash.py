"""``flin restore --shards M``: a backup of N shards written into M shards.

Every record of every dump goes where the ring of M shards puts it:

- ``b"d" + key`` (a value with its expiry header): to the key's owner;
- ``b"x" + expiry + b"d" + key`` (its expiry index entry): with it;
- ``b"u" + uid`` (a remembered INCR/CAS result) and its expiry entry: to
  EVERY target shard. The record does not say which key it was for, and a
  retry of that request goes to whichever shard owns its key now, which must
  find it to apply the request once. They are small and expire
  (``UID_KEEP_MS``), so the copies cost little and go away by themselves.

How it runs: the targets are dealt round-robin into tasks, one process each
(at most ``jobs`` at once), and a task reads every dump and writes only its
own targets' records, at most ``OPEN_AT_ONCE`` LevelDBs open at a time. So
the reads are repeated once per task and the LevelDB writes, the larger
cost, run in parallel; with M past ``OPEN_AT_ONCE * jobs`` the dumps are read
more often. Each dump's sha256 is checked once before anything is written,
and each task checks every dump's record count against the manifest; the
data keys written must add up to the backup's. Used by ``restore``; the
folder it writes is staged there.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Callable

import plyvel

from ..config import Config
from ..ring import Ring
from .dumpfile import BackupError, Progress, records, sha256_of

# the shard's key layout (``flin.shardworker.encoding``, which this package may
# not import; a unit test checks that they agree)
DATA, EXPIRY, UID = b"d", b"x", b"u"

OPEN_AT_ONCE = 64          # target LevelDBs one task has open at a time
_BATCH_BYTES = 4 << 20     # bytes per LevelDB write batch
_EVERY = -1                # "to every target shard"


def owner(ring: Ring, key: bytes) -> int:
    """The target shard of one raw LevelDB entry, or ``_EVERY``."""
    kind = key[:1]
    if kind == DATA:
        return ring.shard(key[1:])
    if kind == EXPIRY:
        raw = key[9:]
        return ring.shard(raw[1:]) if raw[:1] == DATA else _EVERY
    if kind == UID:
        return _EVERY
    raise ValueError("an entry with the unknown prefix %r" % kind)


def _check_sums(src: str, files: list[dict], pool: concurrent.futures.Executor) -> None:
    paths = [os.path.join(src, f["file"]) for f in files]
    for path, f, got in zip(paths, files, pool.map(sha256_of, paths)):
        if got != f["sha256"]:
            raise BackupError("%s: sha256 mismatch (the file is damaged)" % path)


def write_targets(src: str, files: list[dict], shards: int, targets: list[int],
                  stage: str) -> dict[int, tuple[int, int]]:
    """Write ``targets``' LevelDBs (in the staged folder ``stage``) from the
    dumps ``files`` on the ring of ``shards``; ``{target: (entries, data
    keys)}``. Raises ``BackupError``."""
    ring = Ring(shards)
    cfg = Config(data=stage, shards=shards)
    written: dict[int, tuple[int, int]] = {}
    for at in range(0, len(targets), OPEN_AT_ONCE):
        group = targets[at:at + OPEN_AT_ONCE]
        written.update(_write_group(src, files, ring, group, cfg))
    return written


def _write_group(src: str, files: list[dict], ring: Ring, group: list[int],
                 cfg: Config) -> dict[int, tuple[int, int]]:
    dbs: dict[int, plyvel.DB] = {}
    try:
        for t in group:
            dbs[t] = plyvel.DB(cfg.shard_dir(t), create_if_missing=True, error_if_exists=True,
                               write_buffer_size=4 << 20, paranoid_checks=True)
        batches = {t: db.write_batch() for t, db in dbs.items()}
        sizes = dict.fromkeys(dbs, 0)
        entries = dict.fromkeys(dbs, 0)
        data_keys = dict.fromkeys(dbs, 0)

        def put(t: int, k: bytes, v: bytes) -> None:
            batches[t].put(k, v)
            entries[t] += 1
            sizes[t] += len(k) + len(v)
            if sizes[t] >= _BATCH_BYTES:
                batches[t].write()
                batches[t], sizes[t] = dbs[t].write_batch(), 0

        for f in files:
            path = os.path.join(src, f["file"])
            n = 0
            for k, v in records(path):
                n += 1
                try:
                    t = owner(ring, k)
                except ValueError as exc:
                    raise BackupError("%s: %s" % (path, exc)) from None
                if t == _EVERY:
                    for every in dbs:
                        put(every, k, v)
                elif t in dbs:
                    put(t, k, v)
                    data_keys[t] += k[:1] == DATA
            if n != f["entries"]:
                raise BackupError("%s: %d entries, the manifest says %d"
                                  % (path, n, f["entries"]))
        for batch in batches.values():
            batch.write()
    except plyvel.Error as exc:
        raise BackupError("LevelDB refused a shard of %s: %s" % (cfg.data, exc)) from None
    except OSError as exc:
        raise BackupError("%s: %s" % (exc.filename or cfg.data, exc.strerror or exc)) from None
    finally:
        for db in dbs.values():
            db.close()
    return {t: (entries[t], data_keys[t]) for t in group}


def rehash(src: str, manifest: dict, shards: int, stage: str, jobs: int,
           progress: Progress | None = None) -> tuple[int, int]:
    """Write ``shards`` LevelDBs under ``stage`` from the backup ``src``
    (``manifest``, verified); ``(entries, data keys)`` written. Raises
    ``BackupError`` if a dump does not match its manifest, or if the data
    keys written do not add up to the backup's."""
    files = manifest["files"]
    tasks = min(shards, max(jobs, -(-shards // OPEN_AT_ONCE)))
    deal: list[list[int]] = [list(range(i, shards, tasks)) for i in range(tasks)]
    entries = data_keys = done = 0
    with concurrent.futures.ProcessPoolExecutor(
            min(jobs, tasks), mp_context=multiprocessing.get_context("fork")) as pool:
        _check_sums(src, files, pool)
        futures = [pool.submit(write_targets, src, files, shards, targets, stage)
                   for targets in deal]
        step: Callable[[], None] = (lambda: None) if progress is None else (
            lambda: progress(done, entries, 0))
        try:
            for fut in concurrent.futures.as_completed(futures):
                for n, keys in fut.result().values():
                    entries += n
                    data_keys += keys
                    done += 1
                    step()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    if data_keys != manifest["data_keys"]:
        raise BackupError("%d keys written into %d shards, but the backup holds %d"
                          % (data_keys, shards, manifest["data_keys"]))
    return entries, data_keys
