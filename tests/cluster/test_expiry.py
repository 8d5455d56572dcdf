"""Expiry: ttl/expire/persist answers, expired keys invisible to every read
at once, mset ttl, expiry kept across a restart and reclaimed in background."""
from __future__ import annotations

import os
import threading
import time

import plyvel
import pytest

from tests.support.cluster import alive, make_cluster


def test_ttl_answers_minus_one_and_minus_two(client):
    assert client.ttl(b"exp:missing") == -2.0
    client.set(b"exp:forever", b"v")
    assert client.ttl(b"exp:forever") == -1.0
    client.set(b"exp:empty", b"")
    assert client.ttl(b"exp:empty") == -1.0
    assert type(client.ttl(b"exp:forever")) is float


def test_set_with_ttl(client):
    client.set(b"exp:t", b"v", ttl=100)
    assert 99 < client.ttl(b"exp:t") <= 100
    client.set(b"exp:t2", b"v", ttl=2.5)
    assert 1.5 < client.ttl(b"exp:t2") <= 2.5


def test_plain_set_clears_the_ttl_and_ttl_set_replaces_it(client):
    client.set(b"exp:r", b"v", ttl=100)
    client.set(b"exp:r", b"w")
    assert client.ttl(b"exp:r") == -1.0
    client.set(b"exp:r", b"x", ttl=50)
    assert 49 < client.ttl(b"exp:r") <= 50
    client.set(b"exp:r", b"y", ttl=200)
    assert 199 < client.ttl(b"exp:r") <= 200
    assert client.get(b"exp:r") == b"y"


def test_expire(client):
    assert client.expire(b"exp:e-missing", 10) is False
    assert client.ttl(b"exp:e-missing") == -2.0
    client.set(b"exp:e", b"v")
    assert client.expire(b"exp:e", 30) is True
    assert 29 < client.ttl(b"exp:e") <= 30
    assert client.get(b"exp:e") == b"v"
    assert client.expire(b"exp:e", 300) is True  # can lengthen
    assert 299 < client.ttl(b"exp:e") <= 300


@pytest.mark.parametrize("seconds", [0, -1, -1000.5])
def test_expire_now_or_in_the_past_deletes(client, seconds):
    client.set(b"exp:now", b"v")
    assert client.expire(b"exp:now", seconds) is True
    assert client.get(b"exp:now") is None
    assert client.exists(b"exp:now") is False
    assert client.ttl(b"exp:now") == -2.0


def test_persist(client):
    assert client.persist(b"exp:p-missing") is False
    client.set(b"exp:p", b"v")
    assert client.persist(b"exp:p") is False  # no expiry to remove
    client.expire(b"exp:p", 100)
    assert client.persist(b"exp:p") is True
    assert client.ttl(b"exp:p") == -1.0
    assert client.persist(b"exp:p") is False
    assert client.get(b"exp:p") == b"v"


def test_mset_ttl(client):
    mapping = {b"exp:m%d" % i: b"%d" % i for i in range(40)}
    client.mset(mapping, ttl=60)
    for k in mapping:
        assert 59 < client.ttl(k) <= 60
    client.mset({b"exp:m0": b"again"})
    assert client.ttl(b"exp:m0") == -1.0


def test_invalid_ttls_refused(client):
    for bad in (0, -1):
        with pytest.raises(ValueError):
            client.set(b"exp:bad", b"v", ttl=bad)
        with pytest.raises(ValueError):
            client.mset({b"exp:bad": b"v"}, ttl=bad)
    assert client.get(b"exp:bad") is None


def test_expired_keys_invisible_to_every_read_at_once(client):
    short = {b"exp:gone:%02d" % i: b"v%d" % i for i in range(30)}
    client.mset(dict(list(short.items())[:15]), ttl=0.3)
    for k, v in list(short.items())[15:]:
        client.set(k, v, ttl=0.3)
    client.set(b"exp:gone:ctr", b"41", ttl=0.3)
    client.set(b"exp:gone:keep", b"k")
    client.set(b"exp:gone:keep-ttl", b"k", ttl=100)
    assert client.mget(list(short)) == list(short.values())
    time.sleep(0.45)  # no sweep has had to run: reads must hide them by themselves
    for k in short:
        assert client.get(k) is None
        assert client.exists(k) is False
        assert client.ttl(k) == -2.0
    assert client.mget(list(short)) == [None] * len(short)
    live = [b"exp:gone:keep", b"exp:gone:keep-ttl"]
    assert list(client.scan_iter(b"exp:gone:")) == live
    assert client.scan(b"exp:gone:", values=True, limit=1000)[0] == [(k, b"k") for k in live]
    assert client.scan(b"exp:gone:", limit=1)[0] in ([], [live[0]])
    assert list(client.scan_iter(b"exp:gone:", page=1)) == live
    # and to every command that reads before it writes
    assert client.delete(*list(short)[:5]) == 0
    assert client.expire(list(short)[5], 100) is False
    assert client.persist(list(short)[6]) is False
    assert client.incr(b"exp:gone:ctr") == 1  # a missing counter starts at 0
    assert client.set(list(short)[7], b"new", nx=True) is True
    assert client.set(list(short)[8], b"new", xx=True) is False
    assert client.get(list(short)[8]) is None
    assert client.cas(list(short)[9], None, b"new") is True
    assert client.cas(list(short)[10], b"v10", b"new") is False


def test_scan_progresses_through_many_expired_keys(client):
    client.mset({b"exp:many:%05d" % i: b"" for i in range(3000)}, ttl=0.2)
    live = [b"exp:many:%05d~" % i for i in (0, 1500, 2999)]
    client.mset({k: b"" for k in live})
    time.sleep(0.3)
    assert list(client.scan_iter(b"exp:many:", page=2)) == live
    assert client.scan(b"exp:many:", limit=10_000) == (live, None)


def _data_keys(shard_dir: str) -> set[bytes]:
    db = plyvel.DB(shard_dir)
    try:
        return {k for k in db.iterator(include_value=False)}
    finally:
        db.close()


def test_expiry_survives_restart_and_space_is_reclaimed_under_load(tmp_short):
    c = make_cluster(tmp_short).start()
    try:
        with c.client() as db:
            db.set(b"long", b"L", ttl=100)
            db.set(b"plain", b"P")
            short = [b"short:%03d" % i for i in range(200)]
            db.mset({k: b"s" for k in short}, ttl=0.2)
            probe = [b"probe:%d" % i for i in range(64)]  # lands on every shard
            db.mset({k: b"p" for k in probe})
            # keep every shard busy: the sweep must not wait for idle time
            stop = threading.Event()

            def load():
                with c.client() as l:
                    while not stop.is_set():
                        l.mget(probe)

            t = threading.Thread(target=load)
            t.start()
            time.sleep(1.8)  # sweeps run every 0.5 s; leave room on a loaded machine
            stop.set()
            t.join()
            ttl_before = db.ttl(b"long")
            t_before = time.monotonic()
        # SIGKILL, not SIGTERM: a clean stop may sweep on its way out, and
        # what is tested here is the sweep while the shards are busy
        pids = c.child_pids()
        c.kill()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)  # each worker must have let go of its LevelDB lock
        leftover = set()
        for s in range(c.shards):
            keys = _data_keys(os.path.join(c.data, "shard-%02d" % s))
            leftover |= {k for k in keys if b"short:" in k}
        assert not leftover, "expired keys still stored: %d entries" % len(leftover)
        c.start()
        with c.client() as db:
            assert db.get(b"long") == b"L"
            left = db.ttl(b"long")
            # the clock kept running while stopped: no more, no less
            assert ttl_before - (time.monotonic() - t_before) - 0.1 <= left <= ttl_before
            assert db.ttl(b"plain") == -1.0
            assert db.mget(short[:10]) == [None] * 10
    finally:
        if c.proc is not None:
            c.stop()


def test_short_expiry_passes_while_stopped(tmp_short):
    c = make_cluster(tmp_short).start()
    try:
        with c.client() as db:
            db.set(b"brief", b"b", ttl=0.5)
            db.set(b"stays", b"s", ttl=100)
            t_set = time.monotonic()
        assert c.stop() == 0
        time.sleep(0.6)
        c.start()
        with c.client() as db:
            assert db.get(b"brief") is None
            assert db.exists(b"brief") is False
            assert db.get(b"stays") == b"s"
            assert 100 - (time.monotonic() - t_set) - 0.1 <= db.ttl(b"stays") < 100
    finally:
        if c.proc is not None:
            c.stop()
