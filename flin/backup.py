"""Backups: a consistent copy of a running cluster, and a data folder rebuilt from one.

``backup(client, dest)`` opens a LevelDB snapshot on every shard first (in one
request, so the cut is taken when the backup starts: every write acknowledged
before then is in it), then pages each snapshot's raw entries through the
router (``SNAPSHOT_READ``, all shards in one request per round) into
``DEST/shard-NN.dump``, while the cluster keeps serving. ``manifest.json``
is written last: a folder without it is not a backup.

A dump file holds the shard's raw LevelDB entries in key order, every prefix
(data with their expiry headers, the expiry index, remembered request uids)::

    b"FLINDUMP\\x01\\n"                         magic and format version
    klen (u32 BE) vlen (u32 BE) key value      one record per entry
    0xFFFFFFFF count (u64 BE)                   trailer: the number of records

``restore(src, data)`` is offline: it refuses a non-empty ``data``, checks each
file's sha256, then writes the shard's LevelDB in write batches (checking the
record count), then writes ``flin.json`` (last: a half-restored folder will not
start); on any mismatch it removes what it wrote.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import time
from typing import Any, Callable, Iterator

import plyvel

from . import errors
from .cluster import FORMAT_VERSION, write_manifest
from .config import Config
from .protocol import (
    MAX_SCAN_LIMIT, SHARD, SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, ErrorReply,
)
from .ring import DEFAULT_VNODES, Ring

MANIFEST = "manifest.json"
MAGIC = b"FLINDUMP\x01\n"
_END = 0xFFFFFFFF
_HEAD = struct.Struct(">II")
_ROUND_BYTES = 48 << 20    # bytes asked of all shards in one round (one reply frame)
_MIN_PAGE_BYTES = 256 << 10
_BATCH_BYTES = 4 << 20     # restore: bytes per LevelDB write batch
_CHUNK = 8 << 20           # restore: bytes read from a dump at a time

Progress = Callable[[int, int, int], None]   # (shards done, entries so far, bytes so far)


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why."""


def dump_name(shard: int) -> str:
    return "shard-%02d.dump" % shard


def _not_empty(path: str) -> bool:
    return os.path.exists(path) and (not os.path.isdir(path) or bool(os.listdir(path)))


# -- backup ------------------------------------------------------------------------
class _Dump:
    """One shard's dump file being written, hashed as it goes."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "wb")
        self.sha = hashlib.sha256(MAGIC)
        self.f.write(MAGIC)
        self.entries = self.data_keys = self.size = 0

    def write(self, flat: list) -> None:
        parts = []
        pack = _HEAD.pack
        for i in range(0, len(flat), 2):
            k, v = flat[i], flat[i + 1]
            parts.append(pack(len(k), len(v)))
            parts.append(k)
            parts.append(v)
            if k[:1] == b"d":
                self.data_keys += 1
        chunk = b"".join(parts)
        self.sha.update(chunk)
        self.f.write(chunk)
        self.entries += len(flat) // 2
        self.size += len(chunk)

    def finish(self) -> dict:
        tail = struct.pack(">IQ", _END, self.entries)
        self.sha.update(tail)
        self.f.write(tail)
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return {"entries": self.entries, "data_keys": self.data_keys,
                "bytes": len(MAGIC) + self.size + len(tail), "sha256": self.sha.hexdigest()}


def _check(results: list, what: str) -> list:
    for r in results:
        if type(r) is ErrorReply:
            raise errors.error_for_code(r.code, "%s: %s" % (what, r.message))
    return results


def backup(client: Any, dest: str, progress: Progress | None = None,
           page: int = MAX_SCAN_LIMIT) -> dict:
    """Copy the cluster behind ``client`` into the empty folder ``dest``;
    returns the manifest. Raises ``BackupError`` (dest not empty, a shard
    down) or the client's errors; a failed backup leaves no dump behind."""
    if _not_empty(dest):
        raise BackupError("%s is not empty; a backup goes into a new folder" % dest)
    st = client.stats()
    down = [s["id"] for s in st["shards"] if not s.get("alive")]
    if down:
        raise BackupError("shards %s do not answer; a backup needs every shard" % down)
    n = len(st["shards"])
    os.makedirs(dest, exist_ok=True)
    t0 = time.monotonic()
    started = time.time()
    opened = client.execute([[SHARD, s, [SNAPSHOT_OPEN]] for s in range(n)])
    sids = {s: r for s, r in enumerate(opened) if type(r) is int}
    dumps: dict[int, _Dump] = {}
    files: list[dict | None] = [None] * n
    try:
        _check(opened, "opening the snapshots")
        dumps = {s: _Dump(os.path.join(dest, dump_name(s))) for s in range(n)}
        cursor: dict[int, Any] = {s: None for s in range(n)}
        active = list(range(n))
        entries = size = 0
        while active:
            cap = max(_MIN_PAGE_BYTES, _ROUND_BYTES // len(active))
            results = _check(client.execute(
                [[SHARD, s, [SNAPSHOT_READ, sids[s], cursor[s], page, cap]] for s in active]),
                "reading the snapshots")
            still = []
            for s, (flat, last) in zip(active, results):
                dumps[s].write(flat)
                entries += len(flat) // 2
                if last is None:
                    files[s] = {"shard": s, "file": dump_name(s), **dumps[s].finish()}
                    size += files[s]["bytes"]
                else:
                    cursor[s] = last
                    still.append(s)
            active = still
            if progress is not None:
                progress(n - len(active), entries, size + sum(dumps[s].size for s in active))
    except BaseException:
        for d in dumps.values():
            d.f.close()
        for s in range(n):
            try:
                os.unlink(os.path.join(dest, dump_name(s)))
            except FileNotFoundError:
                pass
        raise
    finally:
        try:
            client.execute([[SHARD, s, [SNAPSHOT_CLOSE, sid]] for s, sid in sids.items()], 2.0)
        except errors.FlinError:
            pass  # they expire on their own
    manifest = {
        "kind": "flin-backup", "format": 1, "data_format": FORMAT_VERSION,
        "shards": n, "ring": st["router"]["ring"], "started": started,
        "seconds": time.monotonic() - t0,
        "entries": sum(f["entries"] for f in files if f),
        "data_keys": sum(f["data_keys"] for f in files if f),
        "bytes": sum(f["bytes"] for f in files if f), "files": files,
    }
    tmp = os.path.join(dest, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(dest, MANIFEST))
    return manifest


# -- restore -----------------------------------------------------------------------
def read_manifest(src: str) -> dict:
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


def _sha256(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _records(path: str) -> Iterator[tuple[bytes, bytes]]:
    """The records of a dump; checks the trailer."""
    with open(path, "rb") as f:
        buf = f.read(_CHUNK)
        if not buf.startswith(MAGIC):
            raise BackupError("%s is not a Flin dump (bad magic)" % path)
        pos, n = len(MAGIC), 0

        def fill(need: int) -> bool:
            """Make ``need`` bytes available at ``pos``; False at the end of the file."""
            nonlocal buf, pos
            buf, pos = buf[pos:], 0
            while len(buf) < need:
                more = f.read(max(_CHUNK, need - len(buf)))
                if not more:
                    return False
                buf += more
            return True

        while True:
            if len(buf) - pos < 12 and not fill(12) and len(buf) - pos < 8:
                raise BackupError("%s is truncated" % path)
            klen, vlen = _HEAD.unpack_from(buf, pos)
            if klen == _END:
                if len(buf) - pos < 12:
                    raise BackupError("%s is truncated" % path)
                count = struct.unpack_from(">Q", buf, pos + 4)[0]
                if count != n:
                    raise BackupError("%s: %d records but its trailer says %d" % (path, n, count))
                if len(buf) - pos > 12 or f.read(1):
                    raise BackupError("%s has bytes past its trailer" % path)
                return
            end = pos + 8 + klen + vlen
            if end > len(buf):
                if not fill(8 + klen + vlen):
                    raise BackupError("%s is truncated" % path)
                end = 8 + klen + vlen
            yield buf[pos + 8:pos + 8 + klen], buf[pos + 8 + klen:end]
            pos = end
            n += 1


def restore_shard(src: str, entry: dict, shard_dir: str) -> int:
    """Write one shard's LevelDB from its dump; returns the entries written.
    Raises ``BackupError`` if the file does not match the manifest."""
    path = os.path.join(src, entry["file"])
    if not os.path.isfile(path):
        raise BackupError("%s is missing" % path)
    if os.path.getsize(path) != entry["bytes"]:
        raise BackupError("%s has %d bytes, the manifest says %d"
                          % (path, os.path.getsize(path), entry["bytes"]))
    if _sha256(path) != entry["sha256"]:   # before writing anything from it
        raise BackupError("%s: sha256 mismatch (the file is damaged)" % path)
    db = plyvel.DB(shard_dir, create_if_missing=True, error_if_exists=True,
                   write_buffer_size=16 << 20, paranoid_checks=True)
    n = 0
    try:
        wb, size = db.write_batch(), 0
        for k, v in _records(path):
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
    if _not_empty(data):
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
