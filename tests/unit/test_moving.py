"""A shard's reshard steps (``shardworker/moving.py``) on real LevelDBs, one
source and one target, without processes: the snapshot and the dirty keys
together carry every change, the fence refuses what it must, the switch
changes what a shard owns, and cleanup deletes only what it no longer owns.
The whole reshard through real processes is ``tests/reshard/``."""
from __future__ import annotations

import os

import pytest

from flin import errors
from flin.protocol import (
    DEL, GET, INCR, MGET, MOVE_ABORT, MOVE_BEGIN, MOVE_DIRTY, MOVE_FENCE, MOVE_IMPORT, MOVE_READ,
    MOVE_SWITCH, SCAN, SET, TTL, ErrorReply,
)
from flin.ring import Ring
from flin.shardworker import moving
from flin.shardworker.handlers import HANDLERS
from flin.shardworker.store import Store

N, M = 2, 3          # grow 2 -> 3 shards: shard 0 gives keys to the new shard 2


def _store(path: str, shard: int) -> Store:
    s = Store(path, HANDLERS, shard=shard, create=True)
    moving.on_start(s, Ring(N), 1)
    return s


@pytest.fixture
def pair(tmp_path):
    src, dst = _store(str(tmp_path / "s0"), 0), _store(str(tmp_path / "s2"), 2)
    yield src, dst
    src.close()
    dst.close()


def _mine(shard: int, ring: Ring, count: int, prefix: bytes = b"k") -> list[bytes]:
    keys = []
    i = 0
    while len(keys) < count:
        k = prefix + b"%d" % i
        if ring.shard(k) == shard:
            keys.append(k)
        i += 1
    return keys


def _copy(src: Store, dst: Store) -> int:
    """Page the source's moving entries into the target; entries moved."""
    after, n = None, 0
    while True:
        flat, after = src.apply([[MOVE_READ, after, 7, 1 << 20]])[0]
        for i in range(0, len(flat), 3):              # [target, entries, blob, ...]
            target, count, blob = flat[i:i + 3]
            assert target in (2, -1)
            assert dst.apply([[MOVE_IMPORT, blob]])[0] == count
            n += count
        if after is None:
            return n


def _catch_up(src: Store, dst: Store) -> int:
    flat, left = src.apply([[MOVE_DIRTY, 1000, 1 << 20]])[0]
    assert left == 0
    pairs = [x for i in range(0, len(flat), 3) for x in flat[i + 1:i + 3]]
    if pairs:
        dst.apply([[MOVE_IMPORT, pairs]])
    return len(flat) // 3


def test_a_grow_moves_every_change_and_the_fence_holds(pair):
    src, dst = pair
    old, new = Ring(N), Ring(M)
    keys = _mine(0, old, 60)
    moving_keys = [k for k in keys if new.shard(k) == 2]
    staying = [k for k in keys if new.shard(k) == 0]
    assert moving_keys and staying
    src.apply([[SET, k, b"v0-" + k, None, 0] for k in keys])
    src.apply([[SET, moving_keys[0], b"ttl", 600_000, 0], [SET, moving_keys[1], b"10", None, 0],
               [INCR, moving_keys[1], 5, b"u" * 12]])

    assert src.apply([[MOVE_BEGIN, M, 2, None]]) == [True]
    # written after the snapshot: carried by the catch-up, not the copy
    src.apply([[SET, moving_keys[2], b"later", None, 0], [DEL, [moving_keys[3]]],
               [SET, staying[0], b"stays", None, 0]])
    assert _copy(src, dst) >= len(moving_keys)
    assert _catch_up(src, dst) == 2                 # the two moving keys written since

    assert src.apply([[MOVE_FENCE]]) == [0]
    refused = src.apply([[SET, moving_keys[4], b"x", None, 0]])[0]
    assert type(refused) is ErrorReply and refused.code == errors.Moved.code
    assert src.apply([[SET, staying[1], b"ok", None, 0]]) == [None]   # not moving: served
    fenced = src.apply([[GET, moving_keys[4]]])[0]   # reads of it wait for the switch too
    assert type(fenced) is ErrorReply and fenced.code == errors.Moved.code
    assert src.apply([[GET, staying[2]]]) == [b"v0-" + staying[2]]          # the rest go on

    assert src.apply([[MOVE_SWITCH, M, 2]]) == [True]
    assert dst.apply([[MOVE_SWITCH, M, 2]]) == [True]
    got = src.apply([[GET, moving_keys[5]]])[0]
    assert type(got) is ErrorReply and got.code == errors.Moved.code   # not its key any more
    assert type(src.apply([[MGET, [staying[0], moving_keys[5]]]])[0]) is ErrorReply
    assert src.apply([[GET, staying[0]]]) == [b"stays"]
    assert dst.apply([[GET, moving_keys[2]]]) == [b"later"]
    assert dst.apply([[GET, moving_keys[3]]]) == [None]            # deleted during the move
    assert dst.apply([[GET, moving_keys[0]]]) == [b"ttl"]
    assert 500_000 < dst.apply([[TTL, moving_keys[0]]])[0] <= 600_000      # its expiry too
    assert dst.apply([[INCR, moving_keys[1], 5, b"u" * 12]]) == [15]  # its uid came along: once
    for k in moving_keys[6:]:
        assert dst.apply([[GET, k]]) == [b"v0-" + k]
    # SCAN on the source hides what it gave away before cleanup deletes it
    items, _ = src.apply([[SCAN, b"k", None, 1000, False]])[0]
    assert sorted(items) == sorted(staying)
    assert os.path.exists(os.path.join(src.path, moving.CLEANUP))
    while src.cleanup_at is not None:
        moving.cleanup_step(src, 10)
    assert not os.path.exists(os.path.join(src.path, moving.CLEANUP))
    left = [k[1:] for k, _ in src.db.iterator(prefix=b"d")]
    assert sorted(left) == sorted(staying)


def test_an_abort_cleans_up_what_a_target_took_in(pair):
    src, dst = pair
    keys = _mine(0, Ring(N), 30)
    src.apply([[SET, k, b"v", None, 0] for k in keys])
    mine = _mine(1, Ring(N), 5, b"own")             # a shrink target's own keys
    dst.ring = Ring(N)                              # (stands for shard 1 of 2)
    dst.shard = 1
    dst.apply([[SET, k, b"own", None, 0] for k in mine])
    src.apply([[MOVE_BEGIN, M, 2, None]])
    _copy(src, dst)
    items, _ = dst.apply([[SCAN, b"", None, 1000, False]])[0]
    assert sorted(items) == sorted(mine)            # what it took in is not its own yet
    assert src.apply([[MOVE_ABORT]]) == [True]
    assert dst.apply([[MOVE_ABORT]]) == [True]
    assert src.apply([[SET, keys[0], b"w", None, 0]]) == [None]   # no fence after the abort
    while dst.cleanup_at is not None:
        moving.cleanup_step(dst, 7)
    assert sorted(k[1:] for k, _ in dst.db.iterator(prefix=b"d")) == sorted(mine)


def test_a_restarted_shard_with_its_marker_cleans_up(tmp_path):
    path = str(tmp_path / "s")
    s = _store(path, 0)
    theirs = _mine(1, Ring(N), 10)
    s.apply([[MOVE_IMPORT, [x for k in theirs for x in (b"d" + k, b"\x00v")]]])
    s.close()
    s = Store(path, HANDLERS, shard=0)
    moving.on_start(s, Ring(N), 1)                  # the marker is there: fenced, cleaning
    assert type(s.apply([[GET, theirs[0]]])[0]) is ErrorReply
    while s.cleanup_at is not None:
        moving.cleanup_step(s)
    assert list(s.db.iterator(prefix=b"d")) == []
    s.close()
