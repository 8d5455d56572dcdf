"""The ring: pure, deterministic, balanced, and stable when a shard is added."""
from __future__ import annotations

import bisect
import os
import random
import subprocess
import sys
from collections import Counter

import pytest
import xxhash

from flin.ring import Ring


def _keys(n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(16) for _ in range(n)]


@pytest.fixture(scope="module")
def ring64() -> Ring:
    return Ring(64)


def test_shard_ids_cover_exactly_0_to_n_minus_1():
    for n in (1, 2, 3, 8):
        ring = Ring(n)
        seen = {ring.shard(k) for k in _keys(5000, n)}
        assert seen == set(range(n))


def test_rejects_bad_sizes():
    with pytest.raises(ValueError):
        Ring(0)
    with pytest.raises(ValueError):
        Ring(8, vnodes=0)


def test_deterministic_across_instances_and_processes(ring64):
    keys = [b"", b"a", b"user:1", b"\x00\xff" * 10, "é".encode()] + _keys(200, 1)
    mine = [ring64.shard(k) for k in keys]
    other = Ring(64)
    assert mine == [other.shard(k) for k in keys]
    # A fresh interpreter (with its own hash seed) gives the same answers:
    # the ring never uses Python's hash().
    code = ("import sys,random; from flin.ring import Ring; r=Ring(64); rnd=random.Random(1);"
            "ks=[b'',b'a',b'user:1',b'\\x00\\xff'*10,'é'.encode()]+[rnd.randbytes(16) for _ in range(200)];"
            "print(','.join(str(r.shard(k)) for k in ks))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}, text=True).stdout.strip()
    assert [int(x) for x in out.split(",")] == mine


def _reference_owner(n: int, vnodes: int = 2048):
    """The ring as its docstring describes it, written out independently:
    each shard owns ``vnodes`` points at xxh64("flin-shard-{s}-vnode-{v}");
    a key's slot (the top 20 bits of its xxh64) belongs to the first point
    at or after the slot's start, wrapping around."""
    points = sorted((xxhash.xxh64_intdigest(b"flin-shard-%d-vnode-%d" % (s, v)), s)
                    for s in range(n) for v in range(vnodes))
    hashes = [h for h, _ in points]

    def owner(key: bytes) -> int:
        start = (xxhash.xxh64_intdigest(key) >> 44) << 44
        i = bisect.bisect_left(hashes, start)
        return points[i % len(points)][1]
    return owner


@pytest.mark.parametrize("n", [1, 5, 64])
def test_matches_the_documented_xxhash64_ring(n, ring64):
    ring = ring64 if n == 64 else Ring(n)
    owner = _reference_owner(n)
    keys = _keys(20000, n) + [b"", b"a", b"\xff" * 64]
    assert [ring.shard(k) for k in keys] == [owner(k) for k in keys]
    assert ring.params()["hash"] == "xxh64"


def test_balance_one_million_keys_64_shards(ring64):
    n = 1_000_000
    data = random.Random(4).randbytes(8 * n)
    shard = ring64.shard
    counts = Counter(shard(data[i:i + 8]) for i in range(0, 8 * n, 8))
    assert len(counts) == 64 and sum(counts.values()) == n
    mean = n / 64
    fullest = max(counts.values())
    print("fullest shard %.4fx the mean, emptiest %.4fx" % (fullest / mean, min(counts.values()) / mean))
    assert fullest <= 1.10 * mean


@pytest.mark.parametrize("n", [4, 8, 63])
def test_adding_one_shard_moves_about_one_in_n_plus_one(n):
    before, after = Ring(n), Ring(n + 1)
    keys = _keys(100_000, n)
    moved = [k for k in keys if before.shard(k) != after.shard(k)]
    # Every key that moved went to the new shard: nothing reshuffles among
    # the old ones.
    assert all(after.shard(k) == n for k in moved)
    share = len(moved) / len(keys)
    expected = 1 / (n + 1)
    print("n=%d moved %.4f, 1/(n+1)=%.4f" % (n, share, expected))
    assert 0.8 * expected <= share <= 1.2 * expected


def test_a_ring_rebuilt_from_its_table_maps_every_key_the_same():
    ring = Ring(13)
    again = Ring.from_table(13, ring.table_bytes())
    keys = [b"k%d" % i for i in range(20_000)]
    assert [again.shard(k) for k in keys] == [ring.shard(k) for k in keys]
    with pytest.raises(ValueError):
        Ring.from_table(12, ring.table_bytes())     # it names shard 12
    with pytest.raises(ValueError):
        Ring.from_table(13, ring.table_bytes()[:-2])
