"""The router's read cache, alone: never stale (the fill race included),
bounded in bytes, expiry honoured."""
from __future__ import annotations

import time

from flin.protocol import CAS, DEL, EXPIRE, GET, GETDEL, INCR, MSET, PERSIST, SET, WRITES
from flin.router.readcache import MISS, ReadCache


def test_a_filled_value_is_served_until_a_write_drops_it():
    c = ReadCache(1 << 20, 2)
    assert c.get(0, b"k") is MISS
    c.fill(0, b"k", b"v", 0, c.writes[0])
    assert c.get(0, b"k") == b"v"
    assert c.stats()["hits"] == 1 and c.stats()["misses"] == 1


def test_a_write_routed_between_a_get_and_its_answer_prevents_the_fill():
    c = ReadCache(1 << 20, 2)
    token = c.writes[0]                           # GET k routed: the shard's write count now
    c.written(0, [SET, b"k", b"new", None, 0])    # then SET k routed to the same shard
    c.fill(0, b"k", b"old", 0, token)             # the GET's (older) answer arrives
    assert c.get(0, b"k") is MISS                 # not cached: it may be stale


def test_a_write_to_another_key_of_the_shard_also_prevents_the_fill():
    # conservative by design: the counter is per shard, not per key
    c = ReadCache(1 << 20, 2)
    token = c.writes[1]
    c.written(1, [SET, b"other", b"x", None, 0])
    c.fill(1, b"k", b"v", 0, token)
    assert c.get(1, b"k") is MISS
    token = c.writes[1]
    c.written(0, [SET, b"k2", b"x", None, 0])     # another shard's write does not
    c.fill(1, b"k", b"v", 0, token)
    assert c.get(1, b"k") == b"v"


def test_every_write_kind_drops_what_it_touches():
    ops = {
        SET: [SET, b"k", b"v", None, 0], INCR: [INCR, b"k", 1, None],
        EXPIRE: [EXPIRE, b"k", 5], PERSIST: [PERSIST, b"k"], CAS: [CAS, b"k", None, b"v", None],
        MSET: [MSET, [b"a", b"1", b"k", b"2"], None], DEL: [DEL, [b"x", b"k"]],
        GETDEL: [GETDEL, b"k"],
    }
    assert set(ops) == WRITES                     # a new write op needs a case here
    for code, op in ops.items():
        c = ReadCache(1 << 20, 1)
        c.fill(0, b"k", b"v", 0, c.writes[0])
        c.written(0, op)
        assert c.get(0, b"k") is MISS, "opcode %d left the key cached" % code


def test_bounded_in_bytes_least_recently_used_first():
    entry = 3 + 100 + 64                          # key, value, overhead charged per entry
    c = ReadCache(16 * entry, 1)                  # room for exactly 16 (each <= 1/16 of it)
    value = b"x" * 100
    for i in range(16):
        c.fill(0, b"k%02d" % i, value, 0, c.writes[0])
    assert c.bytes == 16 * entry
    assert c.get(0, b"k00") == value              # k00 used again: k01 is now the oldest
    c.fill(0, b"k16", value, 0, c.writes[0])
    assert c.bytes == 16 * entry
    assert c.get(0, b"k01") is MISS
    assert c.get(0, b"k00") == value and c.get(0, b"k16") == value
    c.fill(0, b"big", b"y" * entry, 0, c.writes[0])   # past 1/16 of the cache: not kept
    assert c.get(0, b"big") is MISS


def test_an_expired_entry_is_not_served():
    c = ReadCache(1 << 20, 1)
    c.fill(0, b"k", b"v", int(time.time() * 1000) - 1, c.writes[0])
    assert c.get(0, b"k") is MISS
    c.fill(0, b"k", b"v", int(time.time() * 1000) + 60_000, c.writes[0])
    assert c.get(0, b"k") == b"v"


def test_a_get_is_not_a_write():
    assert GET not in WRITES
