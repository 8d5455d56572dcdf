"""``flin restore``: a data folder rebuilt from a backup, offline.

``restore(src, data)`` first verifies the backup whole: the manifest's own
checksum, then that every field is consistent (``check_manifest``: format,
shard count, ring, one file per shard 0..N-1 under its own name, totals),
then each dump's size; a non-empty ``data`` is refused. Only then does it
write, and into a staging folder inside ``data`` (made if absent): each
dump's sha256 is checked before its shard's LevelDB is written in write
batches (checking the record count), ``flin.json`` is written last, and only
a complete restore is moved into place, under the folder's owner lock. Any failure, a LevelDB or OS error included,
is a ``BackupError`` with a one-line message, and leaves ``data`` as it was.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
import shutil
import tempfile
from typing import Any

import plyvel

from ..config import MAX_SHARDS, Config
from ..ring import Ring, ring_params
from ..supervisor.datadir import (
    FORMAT_VERSION, LOCK, MANIFEST as DATA_MANIFEST, RESTORE, StartError, take,
    write_manifest,
)
from .rehash import rehash
from .dumpfile import (
    CHECKSUM, MAGIC, MANIFEST, MANIFEST_FORMAT, BackupError, Progress, dump_name,
    manifest_checksum, not_empty, records, sha256_of,
)

_BATCH_BYTES = 4 << 20     # bytes per LevelDB write batch
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MIN_DUMP = len(MAGIC) + 12   # magic and trailer


def read_manifest(src: str) -> dict:
    """A backup's manifest, verified against its checksum and checked to be
    consistent (``check_manifest``). Raises ``BackupError``."""
    where = os.path.join(src, MANIFEST)
    try:
        with open(where, "rb") as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise BackupError("%s has no %s: not a complete Flin backup" % (src, MANIFEST)) from None
    except OSError as exc:
        raise BackupError("cannot read %s: %s" % (where, exc.strerror or exc)) from None
    except ValueError as exc:
        raise BackupError("%s is damaged (not JSON: %s)" % (where, exc)) from None
    if type(manifest) is not dict:
        raise BackupError("%s is damaged (not a JSON object)" % where)
    if CHECKSUM not in manifest:
        if manifest.get("kind") == "flin-backup" and manifest.get("format") == 1:
            raise BackupError("%s is backup format 1, which has no manifest checksum; this Flin "
                              "restores only backups that verify whole: take a new backup" % where)
        raise BackupError("%s has no checksum (%s): damaged, or not a Flin backup"
                          % (where, CHECKSUM))
    if manifest[CHECKSUM] != manifest_checksum(manifest):
        raise BackupError("%s is damaged or was edited: its checksum does not match its content"
                          % where)
    check_manifest(manifest, where)
    return manifest


def _int(value: Any, what: str, lo: int, hi: int, where: str) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise BackupError("%s: %s is %r, not an integer in %d..%d" % (where, what, value, lo, hi))
    return value


def check_manifest(m: dict, where: str) -> None:
    """Refuse a manifest that is not one consistent backup this version reads."""
    if m.get("kind") != "flin-backup" or m.get("format") != MANIFEST_FORMAT:
        raise BackupError("%s: not a Flin backup this version reads (kind %r, format %r; it "
                          "reads format %d)" % (where, m.get("kind"), m.get("format"),
                                                MANIFEST_FORMAT))
    if m.get("data_format") != FORMAT_VERSION:
        raise BackupError("%s: the backup holds data format %r; this Flin writes %d"
                          % (where, m.get("data_format"), FORMAT_VERSION))
    n = _int(m.get("shards"), "shards", 1, MAX_SHARDS, where)
    if m.get("ring") != ring_params():
        raise BackupError("%s: the backup's ring %r differs from this Flin's %r"
                          % (where, m.get("ring"), ring_params()))
    if type(m.get("started")) not in (int, float):
        raise BackupError("%s: started is %r, not a time" % (where, m.get("started")))
    files = m.get("files")
    if type(files) is not list or len(files) != n:
        raise BackupError("%s: %d shards but %s files listed" % (
            where, n, len(files) if type(files) is list else "no list of"))
    seen: set[int] = set()
    for f in files:
        if type(f) is not dict:
            raise BackupError("%s: a file entry is %r, not an object" % (where, f))
        s = _int(f.get("shard"), "a file's shard", 0, n - 1, where)
        if s in seen:
            raise BackupError("%s: shard %d is listed twice" % (where, s))
        seen.add(s)
        if f.get("file") != dump_name(s):
            raise BackupError("%s: shard %d's file is %r, not %r"
                              % (where, s, f.get("file"), dump_name(s)))
        size = _int(f.get("bytes"), "%s's bytes" % dump_name(s), _MIN_DUMP, 2 ** 63, where)
        entries = _int(f.get("entries"), "%s's entries" % dump_name(s), 0, size, where)
        _int(f.get("data_keys"), "%s's data_keys" % dump_name(s), 0, entries, where)
        if type(f.get("sha256")) is not str or not _SHA256.fullmatch(f["sha256"]):
            raise BackupError("%s: %s's sha256 is %r" % (where, dump_name(s), f.get("sha256")))
    for total in ("entries", "data_keys", "bytes"):
        if m.get(total) != sum(f[total] for f in files):
            raise BackupError("%s: %s is %r, but its files add up to %d"
                              % (where, total, m.get(total), sum(f[total] for f in files)))


def check_files(src: str, manifest: dict) -> None:
    """Every dump is there with the size the manifest says (sha256: ``restore_shard``)."""
    for f in manifest["files"]:
        path = os.path.join(src, f["file"])
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise BackupError("%s is missing or unreadable: %s" % (path, exc.strerror)) from None
        if size != f["bytes"]:
            raise BackupError("%s has %d bytes, the manifest says %d (truncated or altered)"
                              % (path, size, f["bytes"]))


def restore_shard(src: str, entry: dict, shard_dir: str) -> int:
    """Write one shard's LevelDB from its dump; returns the entries written.
    Raises ``BackupError`` if the file does not match the manifest, or if
    LevelDB or the OS refuses."""
    path = os.path.join(src, entry["file"])
    try:
        if os.path.getsize(path) != entry["bytes"]:
            raise BackupError("%s has %d bytes, the manifest says %d"
                              % (path, os.path.getsize(path), entry["bytes"]))
        if sha256_of(path) != entry["sha256"]:   # before writing anything from it
            raise BackupError("%s: sha256 mismatch (the file is damaged)" % path)
        db = plyvel.DB(shard_dir, create_if_missing=True, error_if_exists=True,
                       write_buffer_size=16 << 20, paranoid_checks=True)
        n = 0
        try:
            wb, size = db.write_batch(), 0
            for k, v in records(path):
                wb.put(k, v)
                n += 1
                size += len(k) + len(v)
                if size >= _BATCH_BYTES:
                    wb.write()
                    wb, size = db.write_batch(), 0
            wb.write()
        finally:
            db.close()
    except plyvel.Error as exc:
        raise BackupError("shard %d: LevelDB refused %s: %s" % (entry["shard"], shard_dir, exc)) \
            from None
    except OSError as exc:
        raise BackupError("shard %d: %s: %s" % (entry["shard"], exc.filename or path,
                                                exc.strerror or exc)) from None
    if n != entry["entries"]:
        raise BackupError("%s: %d entries, the manifest says %d" % (path, n, entry["entries"]))
    return n


def restore(src: str, data: str, progress: Progress | None = None,
            jobs: int | None = None, shards: int | None = None) -> dict:
    """Rebuild the data folder ``data`` (absent or empty) from the backup in
    ``src``; returns the manifest (with ``shards`` and ``entries`` as
    written). ``shards``: another shard count than the backup's (each
    record goes where that ring puts it: ``rehash``). Raises
    ``BackupError``, leaving ``data`` as it found it."""
    manifest = read_manifest(src)
    check_files(src, manifest)
    if not_empty(data):
        raise BackupError("%s is not empty; restore into a new folder" % data)
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise BackupError("--shards %d is outside 1..%d" % (shards, MAX_SHARDS))
    source = manifest["shards"]
    target = source if shards is None else shards
    jobs = max(1, min(jobs or os.cpu_count() or 1, 8, target))
    try:
        stage = _Stage(data)
    except OSError as exc:
        raise BackupError("cannot make a folder for %s: %s: %s"
                          % (data, exc.filename, exc.strerror or exc)) from None
    try:
        cfg = Config(data=stage.path, shards=target)
        if target == source:
            entries = _restore_each(src, manifest, cfg, jobs, progress)
        else:
            entries, _ = rehash(src, manifest, target, stage.path, jobs, progress)
        # last: a folder that a crash left half restored has no flin.json, and won't start
        extra = {} if target == source else {"resharded_from": source}
        write_manifest(cfg, Ring(target), restored_from=os.path.abspath(src),
                       backup_started=manifest["started"], **extra)
        stage.commit()
    except concurrent.futures.process.BrokenProcessPool:
        stage.abort()
        raise BackupError("a restore process died; %s is left as it was" % data) from None
    except OSError as exc:
        stage.abort()
        raise BackupError("cannot write %s: %s" % (exc.filename or data, exc.strerror or exc)) \
            from None
    except BaseException:
        stage.abort()
        raise
    return {**manifest, "shards": target, "entries": entries}


def _restore_each(src: str, manifest: dict, cfg: Config, jobs: int,
                  progress: Progress | None) -> int:
    """Each dump into its own shard, as it was; the entries written."""
    done = entries = size = 0
    with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(restore_shard, src, f, cfg.shard_dir(f["shard"])): f
                   for f in manifest["files"]}
        try:
            for fut in concurrent.futures.as_completed(futures):
                entries += fut.result()
                size += futures[fut]["bytes"]
                done += 1
                if progress is not None:
                    progress(done, entries, size)
        except BaseException:
            for fut in futures:            # the shards not started yet need not be
                fut.cancel()
            raise
    return entries


class _Stage:
    """The folder a restore writes into, and its move into place: ``data``
    is made first if absent (never a rename onto it, which could replace an
    empty folder a start has just made); the restore writes into a folder
    inside it whose entries move up, flin.json last, under the owner lock.
    ``abort`` removes everything the restore made."""

    def __init__(self, data: str) -> None:
        self.data = os.path.abspath(data)
        self.made: list[str] = []        # folders this restore created, deepest first
        self.moved: list[str] = []
        if not os.path.isdir(self.data):
            up = os.path.dirname(self.data)
            while not os.path.exists(up):
                self.made.append(up)
                up = os.path.dirname(up)
            os.makedirs(self.data)         # FileExistsError if a start made it meanwhile
            self.made.insert(0, self.data)
        self.path = tempfile.mkdtemp(prefix=".restoring-", dir=self.data)

    def commit(self) -> None:
        try:   # a cluster started on the empty folder meanwhile owns it: hands off
            owner = take(Config(data=self.data), RESTORE, "restore into it")
        except StartError as exc:
            raise BackupError(str(exc)) from None
        try:
            names = sorted(os.listdir(self.path), key=lambda n: n == DATA_MANIFEST)
            for name in names:
                dest = os.path.join(self.data, name)
                if os.path.lexists(dest):
                    raise BackupError("%s appeared during the restore" % dest)
                os.rename(os.path.join(self.path, name), dest)
                self.moved.append(dest)
            os.rmdir(self.path)
            self.path = ""
        finally:
            owner.release()

    def abort(self) -> None:
        for path in [self.path, *self.moved]:
            if path:
                shutil.rmtree(path, ignore_errors=True)
        if self.made:                         # our own folder: our lock file goes too
            try:
                os.unlink(os.path.join(self.data, LOCK))
            except OSError:
                pass
        for folder in self.made:             # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                pass
