"""scan/scan_iter: ascending byte order across shards, prefixes, cursors,
values, stable paging under concurrent writes, and the page-size cap."""
from __future__ import annotations

import random
import threading

import pytest

from flin import errors, protocol


def walk(client, prefix, limit, values=False):
    """Every page of a full walk: list of (items, cursor)."""
    pages, cursor = [], None
    for _ in range(100_000):
        items, cursor = client.scan(prefix, cursor, limit, values)
        assert len(items) <= limit
        pages.append((items, cursor))
        if cursor is None:
            return pages
    raise AssertionError("scan never finished")


@pytest.fixture(scope="module")
def keyset(shared_cluster):
    """500 keys under b"scan:k:" spread over every shard, bytes chosen to
    test byte (not str) order."""
    rnd = random.Random(7)
    keys = {b"scan:k:" + rnd.randbytes(rnd.randint(0, 6)) for _ in range(480)}
    keys |= {b"scan:k:", b"scan:k:\x00", b"scan:k:\xff", b"scan:k:\xff\xff", b"scan:k:a",
             b"scan:k:B", b"scan:k:\x7f", b"scan:k:\x80"}
    with shared_cluster.client() as c:
        c.mset({k: b"v" + k for k in keys})
        # neighbours outside the prefix that must never show up
        c.mset({b"scan:j": b"", b"scan:l": b"", b"scan:k": b"", b"scan;k:": b""})
    return sorted(keys)


def test_keys_are_on_every_shard(keyset, shared_cluster):
    from flin.ring import Ring
    ring = Ring(shared_cluster.shards)
    assert {ring.shard(k) for k in keyset} == set(range(shared_cluster.shards))


def test_one_page_holds_all_in_byte_order(client, keyset):
    items, cursor = client.scan(b"scan:k:", limit=10_000)
    assert cursor is None
    assert items == keyset


@pytest.mark.parametrize("limit", [1, 7, 100, 499, 500, 501])
def test_paging_returns_every_key_once_in_order(client, keyset, limit):
    pages = walk(client, b"scan:k:", limit)
    got = [k for items, _ in pages for k in items]
    assert got == keyset
    for items, cursor in pages[:-1]:
        assert cursor is not None
        assert not items or cursor >= items[-1]
    assert pages[-1][1] is None


def test_values(client, keyset):
    pages = walk(client, b"scan:k:", 37, values=True)
    got = [kv for items, _ in pages for kv in items]
    assert got == [(k, b"v" + k) for k in keyset]
    assert all(type(kv) is tuple and len(kv) == 2 for kv in got)


def test_scan_iter(client, keyset):
    assert list(client.scan_iter(b"scan:k:", page=23)) == keyset
    assert list(client.scan_iter(b"scan:k:", values=True, page=1000)) == [
        (k, b"v" + k) for k in keyset]


def test_prefix_selects_exactly(client, keyset):
    sub = [k for k in keyset if k.startswith(b"scan:k:\xff")]
    assert list(client.scan_iter(b"scan:k:\xff", page=3)) == sub
    assert client.scan(b"scan:nothing-here") == ([], None)
    assert list(client.scan_iter("scan:k:a")) == [k for k in keyset if k.startswith(b"scan:k:a")]


def test_empty_prefix_scans_everything_in_order(client, keyset):
    everything = list(client.scan_iter(b"", page=250))
    assert everything == sorted(everything)
    assert len(everything) == len(set(everything))
    assert set(keyset) <= set(everything)
    assert {b"scan:j", b"scan:l", b"scan:k", b"scan;k:"} <= set(everything)


def test_start_after(client, keyset):
    mid = keyset[len(keyset) // 2]
    items, _ = client.scan(b"scan:k:", start_after=mid, limit=10_000)
    assert items == [k for k in keyset if k > mid]
    # a start_after that is not a key works as a position
    items, _ = client.scan(b"scan:k:", start_after=mid + b"\x00", limit=10_000)
    assert items == [k for k in keyset if k > mid + b"\x00"]
    # before the prefix: from the start; after it: nothing
    assert client.scan(b"scan:k:", start_after=b"scan:a", limit=10_000)[0] == keyset
    assert client.scan(b"scan:k:", start_after=b"scan:z", limit=10_000) == ([], None)


def test_deleted_keys_disappear(client):
    client.mset({b"scan:del:%d" % i: b"" for i in range(20)})
    client.delete(*[b"scan:del:%d" % i for i in range(0, 20, 2)])
    assert list(client.scan_iter(b"scan:del:")) == sorted(b"scan:del:%d" % i for i in range(1, 20, 2))


def test_limit_bounds(client):
    assert client.scan(b"scan:k:", limit=protocol.MAX_SCAN_LIMIT)[1] is None
    for bad in (protocol.MAX_SCAN_LIMIT + 1, 0, -1, 1_000_000):
        with pytest.raises(errors.BadRequest) as ei:
            client.scan(b"scan:k:", limit=bad)
        assert "limit" in str(ei.value)


def test_limit_10000_over_more_than_10000_keys(client):
    keys = sorted(b"scan:big:%06d" % i for i in range(12_345))
    client.mset({k: b"" for k in keys})
    pages = walk(client, b"scan:big:", 10_000)
    assert [k for items, _ in pages for k in items] == keys
    assert all(len(items) <= 10_000 for items, _ in pages)


def test_paging_is_stable_while_others_write(shared_cluster, client):
    """Keys present for the whole walk come back exactly once, in order, while
    other keys in the same range are inserted and deleted, both between pages
    (deterministic) and from another client (concurrently)."""
    prefix = b"scan:st:"
    rnd = random.Random(11)
    stable = sorted({prefix + b"%05d" % rnd.randrange(100_000) for _ in range(600)})
    client.mset({k: b"s" for k in stable})
    churn = [prefix + b"%05d" % i + b"~" for i in range(0, 100_000, 97)]  # never equal to stable keys
    client.mset({k: b"c" for k in churn[::2]})
    stop = threading.Event()

    def writer():
        r = random.Random(12)
        with shared_cluster.client() as w:
            while not stop.is_set():
                batch = r.sample(churn, 20)
                w.mset({k: b"c" for k in batch[:10]})
                w.delete(*batch[10:])

    t = threading.Thread(target=writer)
    t.start()
    try:
        got, cursor, pages = [], None, 0
        while True:
            items, cursor = client.scan(prefix, cursor, 25)
            got.extend(items)
            pages += 1
            # between pages: insert keys before and after the cursor, delete some
            batch = rnd.sample(churn, 10)
            client.mset({k: b"c" for k in batch[:5]})
            client.delete(*batch[5:])
            if cursor is None:
                break
    finally:
        stop.set()
        t.join()
    assert pages > 10
    assert got == sorted(set(got)), "keys repeated or out of order"
    seen_stable = [k for k in got if k in set(stable)]
    assert seen_stable == stable
    assert set(got) <= set(stable) | set(churn)
