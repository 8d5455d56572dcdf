"""The router's read cache never serves a stale value."""
import time

import pytest

from tests.support.cluster import make_cluster


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=8, extra=["--read-cache-mb", "8"]).start()
        yield c
        assert c.stop() == 0


def hits(client):
    return client.stats()["router"]["read_cache"]["hits"]


def test_write_read_overwrite_read_delete_read(cached):
    with cached.client() as a, cached.client() as b:
        keys = [b"rc:%d" % i for i in range(400)]           # spread over all 8 shards
        for k in keys:
            a.set(k, b"v1:" + k)
        for _ in range(2):                                  # the second pass is served from cache
            assert [a.get(k) for k in keys] == [b"v1:" + k for k in keys]
        assert hits(a) >= len(keys)
        for k in keys:
            b.set(k, b"v2:" + k)                            # another client overwrites
        assert [a.get(k) for k in keys] == [b"v2:" + k for k in keys]
        assert [a.get(k) for k in keys] == [b"v2:" + k for k in keys]
        assert b.delete(*keys[::2]) == len(keys[::2])
        got = [a.get(k) for k in keys]
        assert got == [None if i % 2 == 0 else b"v2:" + k for i, k in enumerate(keys)]


def served_from_cache(client, key) -> bytes:
    """Read ``key`` and check that the router answered it from its cache."""
    before = hits(client)
    value = client.get(key)
    assert hits(client) == before + 1, "%r was not served from the cache" % key
    return value


def test_every_write_kind_invalidates(cached):
    """Each write kind, routed by another client, drops a value the cache
    demonstrably held: the next read shows the write, never the cached value."""
    with cached.client() as a, cached.client() as b:
        def cache(key: bytes, value: bytes) -> None:
            assert a.get(key) == value                      # fills the cache
            assert served_from_cache(a, key) == value       # ... and it is held

        a.set("rc:w", b"1")
        cache(b"rc:w", b"1")
        b.incr("rc:w")
        cache(b"rc:w", b"2")
        b.mset({"rc:w": b"3", "rc:other": b"x"})
        cache(b"rc:w", b"3")
        assert b.cas("rc:w", b"3", b"4")
        cache(b"rc:w", b"4")
        b.set("rc:w", b"5", xx=True)
        cache(b"rc:w", b"5")
        assert b.expire("rc:w", 100)                        # keeps the value, adds an expiry
        cache(b"rc:w", b"5")
        assert b.persist("rc:w")
        assert b.ttl("rc:w") == -1.0
        cache(b"rc:w", b"5")
        assert b.expire("rc:w", 0)                          # expire <= 0 deletes
        assert a.get("rc:w") is None
        b.set("rc:w", b"6")
        cache(b"rc:w", b"6")
        assert b.delete("rc:w") == 1
        assert a.get("rc:w") is None


def test_expiry_is_honoured_from_cache(cached):
    with cached.client() as a:
        a.set("rc:ttl", b"soon", ttl=0.3)
        assert a.get("rc:ttl") == b"soon" and a.get("rc:ttl") == b"soon"
        time.sleep(0.4)
        assert a.get("rc:ttl") is None
        a.set("rc:ttl2", b"x", ttl=0.3)
        assert a.get("rc:ttl2") == b"x"
        assert a.persist("rc:ttl2")
        time.sleep(0.4)
        assert a.get("rc:ttl2") == b"x"


def test_pipelined_write_then_read_in_one_request(cached):
    with cached.client() as a:
        a.set("rc:p", b"old")
        assert a.get("rc:p") == b"old"
        with a.pipeline() as p:
            p.set("rc:p", b"new")
            p.get("rc:p")
            p.delete("rc:p")
            p.get("rc:p")
        assert p.results == [None, b"new", 1, None]


def test_cache_off_still_answers(tmp_short):
    c = make_cluster(tmp_short, shards=2, extra=["--read-cache-mb", "0"]).start()
    try:
        with c.client() as a:
            a.set("k", b"v")
            assert a.get("k") == b"v"
            assert a.stats()["router"]["read_cache"] is None
    finally:
        assert c.stop() == 0
