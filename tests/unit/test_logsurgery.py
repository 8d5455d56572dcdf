"""LevelDB log surgery alone: a log cut at its first bad record keeps exactly
the records before it, in LevelDB's own format."""
from __future__ import annotations

import os

from flin.ops.logsurgery import BLOCK, HEADER, read_records, truncate_at_corruption, write_records


def _records() -> list[bytes]:
    # small ones, and one that spans blocks (FIRST, MIDDLE, LAST fragments)
    return [b"a" * 10, b"b" * 100, b"c" * (2 * BLOCK + 500), b"d" * 7, b"e" * 3000]


def test_written_records_read_back_whole():
    data = write_records(_records())
    assert read_records(data) == (_records(), False)


def test_a_torn_tail_is_not_damage():
    data = write_records(_records())
    records, damaged = read_records(data[:-5])
    assert records == _records()[:-1] and not damaged


def test_a_flipped_byte_keeps_the_records_before_it():
    recs = _records()
    data = bytearray(write_records(recs))
    at = len(write_records(recs[:3])) + HEADER + 2      # inside the 4th record's payload
    data[at] ^= 0xFF
    assert read_records(bytes(data)) == (recs[:3], True)


def test_truncate_rewrites_only_damaged_logs(tmp_path):
    recs = _records()
    good = write_records(recs)
    bad = bytearray(good)
    bad[HEADER + 1] ^= 0x01                             # the first record is damaged
    (tmp_path / "000003.log").write_bytes(good)
    (tmp_path / "000005.log").write_bytes(bytes(bad))
    (tmp_path / "MANIFEST-000002").write_bytes(b"untouched")
    notes = truncate_at_corruption(str(tmp_path))
    assert notes == ["000005.log: damaged; kept the 0 write batches before the damage"]
    assert (tmp_path / "000003.log").read_bytes() == good
    assert read_records((tmp_path / "000005.log").read_bytes()) == ([], False)
    assert (tmp_path / "MANIFEST-000002").read_bytes() == b"untouched"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".clean")]
