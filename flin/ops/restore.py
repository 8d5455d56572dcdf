"""``flin restore``: a data folder rebuilt from a backup, offline.

``restore(src, data)`` refuses a non-empty ``data``, checks each dump's
sha256, then writes the shard's LevelDB in write batches (checking the
record count), then writes ``flin.json`` (last: a half-restored folder will
not start); on any mismatch it removes what it wrote.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil

import plyvel

from ..config import Config
from ..ring import DEFAULT_VNODES, Ring
from ..supervisor.datadir import FORMAT_VERSION, write_manifest
from .dumpfile import MANIFEST, BackupError, Progress, not_empty, records, sha256_of

_BATCH_BYTES = 4 << 20     # bytes per LevelDB write batch


def read_manifest(src: str) -> dict:
    """A backup's manifest, checked to be one this version reads."""
    try:
        with open(os.path.join(src, MANIFEST)) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise BackupError("%s has no %s: not a complete Flin backup" % (src, MANIFEST)) from None
    except ValueError as exc:
        raise BackupError("%s/%s is damaged: %s" % (src, MANIFEST, exc)) from None
    if manifest.get("kind") != "flin-backup" or manifest.get("format") != 1:
        raise BackupError("%s is not a Flin backup this version reads" % src)
    if manifest.get("data_format") != FORMAT_VERSION:
        raise BackupError("the backup holds data format %r; this Flin writes %d"
                          % (manifest.get("data_format"), FORMAT_VERSION))
    return manifest


def restore_shard(src: str, entry: dict, shard_dir: str) -> int:
    """Write one shard's LevelDB from its dump; returns the entries written.
    Raises ``BackupError`` if the file does not match the manifest."""
    path = os.path.join(src, entry["file"])
    if not os.path.isfile(path):
        raise BackupError("%s is missing" % path)
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
    if n != entry["entries"]:
        raise BackupError("%s: %d entries, the manifest says %d" % (path, n, entry["entries"]))
    return n


def restore(src: str, data: str, progress: Progress | None = None,
            jobs: int | None = None) -> dict:
    """Rebuild the data folder ``data`` (absent or empty) from the backup in
    ``src``; returns the manifest. Raises ``BackupError``, leaving ``data``
    as it found it."""
    manifest = read_manifest(src)
    if not_empty(data):
        raise BackupError("%s is not empty; restore into a new folder" % data)
    shards = manifest["shards"]
    ring = Ring(shards, vnodes=manifest["ring"].get("vnodes", DEFAULT_VNODES))
    if ring.params() != manifest["ring"]:
        raise BackupError("the backup's ring %r differs from this Flin's %r"
                          % (manifest["ring"], ring.params()))
    cfg = Config(data=data, shards=shards)
    created = not os.path.exists(data)
    os.makedirs(data, exist_ok=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, 8, shards))
    done = entries = size = 0
    try:
        with concurrent.futures.ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(restore_shard, src, f, cfg.shard_dir(f["shard"])): f
                       for f in manifest["files"]}
            for fut in concurrent.futures.as_completed(futures):
                entries += fut.result()
                size += futures[fut]["bytes"]
                done += 1
                if progress is not None:
                    progress(done, entries, size)
        # last: a folder that a crash left half restored has no flin.json, and won't start
        write_manifest(cfg, ring, restored_from=os.path.abspath(src),
                       backup_started=manifest["started"])
    except BaseException:
        if created:
            shutil.rmtree(data, ignore_errors=True)
        else:
            for name in os.listdir(data):
                path = os.path.join(data, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        raise
    return manifest
