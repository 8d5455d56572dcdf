"""Checked reading of LevelDB write-ahead logs, for ``flin repair``.

LevelDB's RepairDB replays ``*.log`` files WITHOUT verifying their record
checksums (repair.cc passes ``checksum=false``), so a flipped byte in a log
comes back as a wrong value. Before repairing, ``truncate_at_corruption``
rewrites each log with only the records before its first bad one: the shard
then holds a prefix of its history, never a garbage value.

Log format (leveldb/doc/log_format.md): 32 KiB blocks of records, each with a
7-byte header: masked CRC32C (4, little-endian) of type+data, data length
(2), type (1: FULL, 2: FIRST, 3: MIDDLE, 4: LAST); fewer than 7 bytes left
in a block are zero padding.
"""
from __future__ import annotations

import os
import struct

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_MASK_DELTA = 0xA282EAD8


def _table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_T = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    t = _T
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(data: bytes) -> tuple[list[bytes], bool]:
    """The whole logical records before the first damaged one, and whether
    damage was found (a torn tail, as after a crash mid-write, is not damage)."""
    records: list[bytes] = []
    pending: list[bytes] | None = None
    pos = 0
    while pos < len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        if pos + HEADER > len(data):
            return records, False               # torn header at the tail
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0 and crc == 0:  # zero padding (preallocated)
            pos += left_in_block
            continue
        end = pos + HEADER + length
        if end > len(data):
            return records, False               # torn record at the tail
        if length > left_in_block - HEADER:
            return records, True
        payload = data[pos + HEADER:end]
        if _mask(crc32c(bytes((kind,)) + payload)) != crc:
            return records, True
        pos = end
        if kind == FULL and pending is None:
            records.append(payload)
        elif kind == FIRST and pending is None:
            pending = [payload]
        elif kind == MIDDLE and pending is not None:
            pending.append(payload)
        elif kind == LAST and pending is not None:
            pending.append(payload)
            records.append(b"".join(pending))
            pending = None
        else:
            return records, True
    return records, False


def write_records(records: list[bytes]) -> bytes:
    """Records laid out in LevelDB's log format."""
    out = bytearray()
    for rec in records:
        first = True
        view = memoryview(rec)
        while True:
            left_in_block = BLOCK - len(out) % BLOCK
            if left_in_block < HEADER:
                out += b"\x00" * left_in_block
                left_in_block = BLOCK
            room = left_in_block - HEADER
            frag, view = bytes(view[:room]), view[room:]
            last = len(view) == 0
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            crc = _mask(crc32c(bytes((kind,)) + frag))
            out += struct.pack("<IHB", crc, len(frag), kind) + frag
            first = False
            if last:
                break
    return bytes(out)


def truncate_at_corruption(folder: str) -> list[str]:
    """Rewrite every damaged ``*.log`` in ``folder`` to its good prefix;
    returns a line for each file changed."""
    notes = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".log"):
            continue
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        records, damaged = read_records(data)
        if not damaged:
            continue
        tmp = path + ".clean"
        with open(tmp, "wb") as f:
            f.write(write_records(records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        notes.append("%s: damaged; kept the %d write batches before the damage" % (name, len(records)))
    return notes
