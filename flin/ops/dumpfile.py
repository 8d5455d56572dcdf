"""The backup folder's format, written by ``backup`` and read by ``restore``.

A dump file holds one shard's raw LevelDB entries in key order, every prefix
(data with their expiry headers, the expiry index, remembered request uids)::

    b"FLINDUMP\\x01\\n"                         magic and format version
    klen (u32 BE) vlen (u32 BE) key value      one record per entry
    0xFFFFFFFF count (u64 BE)                   trailer: the number of records

``manifest.json`` lists each file with its shard, entry count, size and
sha256; a folder without it is not a backup. Its field ``manifest_sha256``
is the sha256 of the rest of the manifest as canonical JSON (sorted keys, no
spaces: ``manifest_checksum``), so an edited or damaged manifest is refused
before anything in it is trusted. It guards against damage and mistakes, not
against someone who recomputes it: ``restore`` also checks that every field
is consistent. Format 1 (before this checksum) is no longer restored.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Callable, Iterator

from ..supervisor.datadir import LOCK

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2        # 2: the manifest carries its own checksum
CHECKSUM = "manifest_sha256"
MAGIC = b"FLINDUMP\x01\n"
_END = 0xFFFFFFFF
_HEAD = struct.Struct(">II")
_CHUNK = 8 << 20           # bytes read from a dump at a time

Progress = Callable[[int, int, int], None]   # (shards done, entries so far, bytes so far)


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why."""


def dump_name(shard: int) -> str:
    """The dump file of ``shard`` in a backup folder."""
    return "shard-%02d.dump" % shard


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """The sha256 of ``manifest``'s canonical JSON without its ``CHECKSUM`` field."""
    rest = {k: v for k, v in manifest.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its checksum added (the last field written)."""
    return {**manifest, CHECKSUM: manifest_checksum(manifest)}


def not_empty(path: str) -> bool:
    """Whether ``path`` exists and is not an empty folder (an owner lock
    alone, ``flin.lock``, left by a start or a restore, does not count)."""
    return os.path.exists(path) and (
        not os.path.isdir(path) or bool(set(os.listdir(path)) - {LOCK}))


class DumpWriter:
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


def sha256_of(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def records(path: str) -> Iterator[tuple[bytes, bytes]]:
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
