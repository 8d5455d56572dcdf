"""``flin restore --shards M``: a backup of a 4-shard cluster restored into
more shards, fewer, and one, through the real CLI and a real cluster on the
result: every key where the new ring puts it (read through the router, and
each shard's LevelDB opened afterwards), values and expiries kept, a key
that expired gone, and an INCR retried with its request id applied once
on whichever shard owns its key now. Starting a folder with another count
is refused with the way to change it."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import plyvel
import pytest

from flin.ops import rehash
from flin.protocol import INCR
from flin.ring import Ring
from flin.shardworker import encoding
from tests.operations.test_operating import USAGE, flin
from tests.support.cluster import make_cluster

SHARDS = 4
KEYS = {b"rs:%05d" % i: b"value-%d" % i for i in range(2000)}
LASTING = {b"rs:ttl:%03d" % i: b"lasting-%d" % i for i in range(100)}     # ttl 600 s
BRIEF = [b"rs:brief:%02d" % i for i in range(20)]                          # ttl 1 s
COUNTERS = [b"rs:count:%02d" % i for i in range(30)]


@pytest.fixture(scope="module")
def backup(tmp_path_factory):
    """A backup of a 4-shard cluster, and the uid and result of each counter's INCR."""
    base = str(tmp_path_factory.mktemp("rs"))
    incrs = {}
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=SHARDS).start()
        try:
            with c.client() as cl:
                cl.mset(KEYS)
                cl.mset(LASTING, ttl=600)
                cl.mset([(k, b"brief") for k in BRIEF], ttl=1)
                for i, k in enumerate(COUNTERS):
                    uid = os.urandom(12)
                    for _ in range(i + 1):     # counter i is i + 1, its last INCR remembered
                        uid = os.urandom(12)
                        got = cl.execute([[INCR, k, 1, uid]])[0]
                    incrs[k] = (uid, got)
            flin("backup", "-e", c.endpoint, os.path.join(base, "bk"))
        finally:
            assert c.stop() == 0
    return os.path.join(base, "bk"), incrs


def _restore(src: str, d: str, shards: int) -> str:
    out = flin("restore", src, "--data", os.path.join(d, "data"), "--shards", str(shards),
               "--no-progress").stdout
    assert "restore: %d shards, %d keys" % (shards, len(KEYS) + len(LASTING) + len(BRIEF)
                                            + len(COUNTERS)) in out, out
    return out


def _owners_on_disk(data: str, shards: int) -> tuple[list[bytes], list[bytes]]:
    """Open each shard's LevelDB: (its data keys, all shards together; the
    entries found on a shard that does not own their key)."""
    ring, found, strays = Ring(shards), [], []
    for s in range(shards):
        db = plyvel.DB(os.path.join(data, "shard-%02d" % s))
        try:
            for k, _ in db.iterator(prefix=encoding.DATA):
                found.append(k[1:])
                if ring.shard(k[1:]) != s:
                    strays.append(k)
            for k, _ in db.iterator(prefix=encoding.EXPIRY):
                raw = k[9:]
                if raw[:1] == encoding.DATA and ring.shard(raw[1:]) != s:
                    strays.append(k)
        finally:
            db.close()
    return found, strays


@pytest.mark.parametrize("shards", [7, 3, 1])
def test_a_backup_restores_into_another_shard_count(backup, shards):
    src, incrs = backup
    time.sleep(1.2)                         # the brief keys have expired by now
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        _restore(src, d, shards)
        c = make_cluster(d, shards=shards).start()
        try:
            with c.client() as cl:
                keys = sorted(KEYS)
                assert cl.mget(keys) == [KEYS[k] for k in keys]      # GET routes by the new ring
                lasting = sorted(LASTING)
                assert cl.mget(lasting) == [LASTING[k] for k in lasting]
                ttls = [cl.ttl(k) for k in lasting]
                assert all(500 < t <= 600 for t in ttls), ttls       # the expiry came along
                assert cl.mget(BRIEF) == [None] * len(BRIEF)         # expired stays gone
                for i, k in enumerate(COUNTERS):
                    uid, got = incrs[k]
                    assert got == i + 1
                    # the retry of its last INCR is answered from its record: not applied again
                    assert cl.execute([[INCR, k, 1, uid]])[0] == i + 1, k
                    assert cl.get(k) == b"%d" % (i + 1)
                assert list(cl.scan_iter(b"rs:0")) == keys
                assert len(cl.status()["shards"]) == shards
        finally:
            assert c.stop() == 0
        found, strays = _owners_on_disk(os.path.join(d, "data"), shards)
        assert strays == []
        kept = [k for k in found if k not in BRIEF]   # (the sweeper may have deleted those)
        assert len(kept) == len(set(kept))            # no key in two shards
        assert set(kept) == set(KEYS) | set(LASTING) | set(COUNTERS)


def test_the_restore_writes_nothing_when_a_dump_is_damaged(backup, tmp_path):
    src, _ = backup
    bad = str(tmp_path / "bad")
    subprocess.run(["cp", "-r", src, bad], check=True)
    with open(os.path.join(bad, "shard-02.dump"), "r+b") as f:
        f.seek(3000)
        byte = f.read(1)
        f.seek(3000)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = str(tmp_path / "data")
    p = flin("restore", bad, "--data", target, "--shards", "6", check_rc=USAGE)
    assert "sha256 mismatch" in p.stderr, p.stderr
    assert not os.path.exists(target) or os.listdir(target) == []


def test_a_folder_started_with_another_count_names_the_way_to_change_it(backup):
    src, _ = backup
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        _restore(src, d, 5)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIN_")}
        p = subprocess.run([sys.executable, "-m", "flin", "start", "--data",
                            os.path.join(d, "data"), "--shards", "8", "--bind",
                            "ipc://" + os.path.join(d, "c.sock"), "--resp", "off"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode != 0
        assert "has 5 shards, not 8" in p.stderr, p.stderr
        assert "`flin reshard --data %s --shards 8`" % os.path.join(d, "data") in p.stderr
        assert "flin restore BACKUP --data NEW --shards 8" in p.stderr, p.stderr


def test_the_restore_keeps_the_shards_key_layout():
    """rehash may not import the shard worker: its copy of the layout must agree."""
    assert (rehash.DATA, rehash.EXPIRY, rehash.UID) == (
        encoding.DATA, encoding.EXPIRY, encoding.UID)
    ring = Ring(5)
    assert rehash.owner(ring, encoding.DATA + b"k") == ring.shard(b"k")
    assert rehash.owner(ring, encoding.expiry_key(123, encoding.DATA + b"k")) == ring.shard(b"k")
    assert rehash.owner(ring, encoding.UID + b"u" * 12) == rehash._EVERY
    assert rehash.owner(ring, encoding.expiry_key(123, encoding.UID + b"u" * 12)) == rehash._EVERY
    with pytest.raises(ValueError):
        rehash.owner(ring, b"z-unknown")
