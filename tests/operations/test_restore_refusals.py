"""``flin restore`` verifies a backup whole before it trusts it: a backup
whose manifest or files were altered is refused with one clear line (exit 2)
and nothing, not even a partial shard, lands in the target. One backup of a
real 8-shard cluster; each case copies it, alters it, and restores it
through ``python -m flin restore``."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Callable

import pytest

from tests.operations.test_operating import USAGE, flin
from tests.support.cluster import make_cluster

SHARDS = 8
KEYS = {b"rk:%05d" % i: b"value-%d" % i for i in range(3000)}


def _checksum(manifest: dict) -> str:
    """The manifest's checksum as the format defines it: sha256 of its canonical
    JSON (sorted keys, no spaces) without the checksum field itself."""
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory):
    """A backup of an 8-shard cluster holding KEYS, and the folder it lives in."""
    base = str(tmp_path_factory.mktemp("bk"))
    import tempfile
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=SHARDS).start()
        try:
            with c.client() as cl:
                cl.mset(KEYS)
            flin("backup", "-e", c.endpoint, os.path.join(base, "good"))
        finally:
            assert c.stop() == 0
    return os.path.join(base, "good")


def _edit(change: Callable[[dict], None], rehash: bool = False) -> Callable[[str], None]:
    """Alter manifest.json with ``change``; ``rehash``: recompute its checksum
    too, as someone editing it on purpose would (the structure checks must
    still refuse it)."""
    def tamper(folder: str) -> None:
        path = os.path.join(folder, "manifest.json")
        with open(path) as f:
            m = json.load(f)
        change(m)
        if rehash:
            m["manifest_sha256"] = _checksum(m)
        with open(path, "w") as f:
            json.dump(m, f, indent=2)
    return tamper


def _file(m: dict, shard: int) -> dict:
    return next(f for f in m["files"] if f["shard"] == shard)


def _set(field: str, value) -> Callable[[dict], None]:
    return lambda m: m.__setitem__(field, value)


def _del(field: str) -> Callable[[dict], None]:
    return lambda m: m.pop(field, None)


def _shard_7_as_8(m: dict) -> None:
    _file(m, 7)["shard"] = 8


def _shard_7_as_6(m: dict) -> None:
    _file(m, 7)["shard"] = 6


def _drop_file_entry(m: dict) -> None:
    m["files"] = m["files"][:-1]


def _other_ring(m: dict) -> None:
    m["ring"]["vnodes"] = 1024


def _shard_7_file_name(m: dict) -> None:
    _file(m, 7)["file"] = "../elsewhere.dump"


def _format_1(m: dict) -> None:          # as the backups before the manifest checksum
    m.pop("manifest_sha256", None)
    m["format"] = 1


def _rm(name: str) -> Callable[[str], None]:
    return lambda folder: os.unlink(os.path.join(folder, name))


def _truncate(name: str) -> Callable[[str], None]:
    def tamper(folder: str) -> None:
        path = os.path.join(folder, name)
        os.truncate(path, os.path.getsize(path) - 7)
    return tamper


def _flip(name: str, at: int = 2000) -> Callable[[str], None]:
    def tamper(folder: str) -> None:
        with open(os.path.join(folder, name), "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x20]))
    return tamper


def _garbage(folder: str) -> None:
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write('{"kind": "flin-backup", "shards": 8, "fil')


CASES = {   # name: (tampering, what the one-line refusal must say)
    "shards 8->9": (_edit(_set("shards", 9)), "checksum"),
    "shards 8->9, rehashed": (_edit(_set("shards", 9), True), "9 shards"),
    "shards 8->0, rehashed": (_edit(_set("shards", 0), True), "shards"),
    "shards as a string, rehashed": (_edit(_set("shards", "8"), True), "shards"),
    "one shard 7->8": (_edit(_shard_7_as_8), "checksum"),
    "one shard 7->8, rehashed": (_edit(_shard_7_as_8, True), "shard"),
    "duplicate shard numbers, rehashed": (_edit(_shard_7_as_6, True), "shard 6"),
    "a file entry dropped, rehashed": (_edit(_drop_file_entry, True), "files"),
    "another ring, rehashed": (_edit(_other_ring, True), "ring"),
    "a file name outside the backup, rehashed": (_edit(_shard_7_file_name, True), "file"),
    "a field removed": (_edit(_del("ring")), "checksum"),
    "a field removed, rehashed": (_edit(_del("ring"), True), "ring"),
    "no checksum": (_edit(_del("manifest_sha256")), "checksum"),
    "format 1 (before the checksum)": (_edit(_format_1), "format 1, which has no manifest checksum"),
    "manifest is JSON garbage": (_garbage, "manifest.json"),
    "manifest is not an object": (lambda d: open(os.path.join(d, "manifest.json"), "w")
                                  .write("[1, 2]"), "manifest.json"),
    "manifest deleted": (_rm("manifest.json"), "manifest.json"),
    "a dump deleted": (_rm("shard-03.dump"), "shard-03.dump"),
    "a dump truncated": (_truncate("shard-05.dump"), "shard-05.dump"),
    "a byte flipped in a dump": (_flip("shard-07.dump"), "sha256"),
}


def _refused(p, says: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == USAGE, (p.returncode, p.stdout, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("flin: "), p.stderr
    assert "Traceback" not in p.stderr and says in lines[0], p.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_altered_backup_is_refused_and_nothing_is_written(backup_dir, tmp_path, case):
    tamper, says = CASES[case]
    bad = str(tmp_path / "bad")
    shutil.copytree(backup_dir, bad)
    tamper(bad)
    parent = tmp_path / "out"
    parent.mkdir()
    target = parent / "data"
    _refused(flin("restore", bad, "--data", str(target), check_rc=None), says)
    assert os.listdir(parent) == []                # no target, no half-written leftovers
    target.mkdir()                                 # an existing empty target stays empty
    _refused(flin("restore", bad, "--data", str(target), check_rc=None), says)
    assert os.listdir(parent) == ["data"] and os.listdir(target) == []


def test_a_leveldb_or_disk_failure_is_one_line_and_leaves_nothing(backup_dir, tmp_path):
    """A real LevelDB write error: the restore runs with a file size limit
    (RLIMIT_FSIZE; Python ignores SIGXFSZ, so LevelDB's write gets EFBIG)."""
    import resource
    import subprocess
    import sys
    from tests.support.cluster import ROOT
    parent = tmp_path / "out"
    parent.mkdir()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    p = subprocess.run([sys.executable, "-m", "flin", "restore", backup_dir, "--data",
                        str(parent / "data")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT}, preexec_fn=small_files, timeout=60)
    _refused(p, "LevelDB")
    assert os.listdir(parent) == []
    _refused(flin("restore", backup_dir, "--data", "/proc/version/data", check_rc=None),
             "/proc/version")                  # its parent is a file


def test_a_verified_backup_restores_every_key_where_get_finds_it(backup_dir, tmp_path_factory):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        os.makedirs(os.path.join(d, "data"))       # into an existing empty folder
        out = flin("restore", backup_dir, "--data", os.path.join(d, "data")).stdout
        assert "restore: 8 shards, 3000 keys" in out
        assert sorted(os.listdir(os.path.join(d, "data"))) == \
            ["flin.json", "flin.lock"] + ["shard-%02d" % s for s in range(SHARDS)]
        c = make_cluster(d, shards=SHARDS).start()
        try:
            with c.client() as cl:
                keys = sorted(KEYS)
                assert cl.mget(keys) == [KEYS[k] for k in keys]   # GET routes by the ring
                assert list(cl.scan_iter(b"rk:")) == keys
                assert all(s["alive"] for s in cl.status()["shards"])
        finally:
            assert c.stop() == 0
