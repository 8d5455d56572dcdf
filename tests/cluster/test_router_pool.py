"""A pool of routers (``flin start --routers N``): they start, every one
serves, a client given one endpoint spreads over all of them, and the read
cache of one never serves a value older than a write acknowledged through
another."""
import json
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import flin
from tests.support import faults as faultlib
from tests.support.cluster import ROOT, make_cluster


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pool():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        port = free_port()
        c = make_cluster(d, shards=4, extra=["--routers", "3", "--read-cache-mb", "8",
                                             "--metrics-port", str(port)]).start()
        c.metrics_port = port
        yield c
        assert c.stop() == 0


def endpoints(cluster):
    return [cluster.endpoint] + ["%s.%d" % (cluster.endpoint, i) for i in (1, 2)]


def requests_at(endpoint: str) -> int:
    with flin.Client(endpoint, timeout=5, discover=False) as c:
        return c.stats()["router"]["requests"]


def test_three_routers_start_and_each_serves(pool):
    with pool.client() as c:
        st = c.status()
        assert [r["endpoint"] for r in st["routers"]] == endpoints(pool)
        assert all(r["alive"] for r in st["routers"])
        pids = {r["pid"] for r in st["routers"]}
        assert len(pids) == 3 and pids <= pool.child_pids()
        assert c.routers() == endpoints(pool)
    assert set(faultlib.router_pids(pool)) == {0, 1, 2}
    for i, ep in enumerate(endpoints(pool)):        # each is a whole front door
        with flin.Client(ep, timeout=5, discover=False) as c:
            c.set(b"pool:own:%d" % i, b"%d" % i)
            assert c.status()["router"]["id"] == i
    with flin.Client(endpoints(pool)[2], discover=False) as c:
        assert [c.get(b"pool:own:%d" % i) for i in range(3)] == [b"0", b"1", b"2"]


def test_status_json_lists_the_routers(pool):
    out = subprocess.run([sys.executable, "-m", "flin", "status", "--json", "-e", pool.endpoint],
                         capture_output=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    routers = json.loads(out.stdout)["routers"]
    assert [(r["id"], r["endpoint"], r["alive"]) for r in routers] == \
        [(i, ep, True) for i, ep in enumerate(endpoints(pool))]
    assert all(isinstance(r["pid"], int) for r in routers)


def test_one_endpoint_reaches_every_router(pool):
    """A client given router 0's endpoint only: every router's request
    counter grows, by about a third of the calls each."""
    before = [requests_at(ep) for ep in endpoints(pool)]
    with pool.client() as c:
        for i in range(600):
            c.set(b"pool:spread:%d" % i, b"x")
    grown = [requests_at(ep) - b - 1 for ep, b in zip(endpoints(pool), before)]
    assert sum(grown) >= 600 and min(grown) >= 100, grown


def test_threads_and_asyncio_spread_too(pool):
    import asyncio
    import flin.asyncio
    before = [requests_at(ep) for ep in endpoints(pool)]
    with pool.client() as c:
        ts = [threading.Thread(target=lambda t=t: [c.set(b"pool:t%d:%d" % (t, i), b"v")
                                                   for i in range(100)]) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    async def main():
        a = flin.asyncio.Client(pool.endpoint, timeout=10)
        for _ in range(10):
            await asyncio.gather(*[a.get(b"pool:t0:%d" % i) for i in range(100)])
            await asyncio.sleep(0.01)
        await a.close()
    asyncio.run(main())
    grown = [requests_at(ep) - b - 1 for ep, b in zip(endpoints(pool), before)]
    assert min(grown) >= 50, grown


def test_metrics_cover_every_router(pool):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    for i, ep in enumerate(endpoints(pool)):
        with flin.Client(ep, discover=False) as c:
            for _ in range(10 * (i + 1)):
                c.ping()
    url = "http://127.0.0.1:%d/metrics" % pool.metrics_port
    text = faultlib.wait_for(lambda: _get(url), 15, "the exporter")
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    up = {s.labels["router"]: s.value for s in samples if s.name == "flin_router_up"}
    assert up == {"0": 1, "1": 1, "2": 1}
    reqs = {s.labels["router"]: s.value for s in samples
            if s.name == "flin_router_requests_total"}
    assert set(reqs) == {"0", "1", "2"} and all(v >= 10 for v in reqs.values()), reqs
    shard_up = [s for s in samples if s.name == "flin_shard_up"]
    assert len(shard_up) == 4 and all(s.value == 1 for s in shard_up)


def _get(url: str):
    import urllib.request
    try:
        return urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None


def test_discover_false_keeps_one_endpoint(pool):
    before = [requests_at(ep) for ep in endpoints(pool)]
    with flin.Client(endpoints(pool)[1], discover=False) as c:
        for i in range(100):
            c.get(b"pool:one:%d" % i)
    grown = [requests_at(ep) - b - 1 for ep, b in zip(endpoints(pool), before)]
    assert grown == [0, 100, 0], grown


def cache_hits(endpoint: str) -> int:
    with flin.Client(endpoint, timeout=5, discover=False) as c:
        return c.stats()["router"]["read_cache"]["hits"]


def test_a_write_through_one_router_is_read_through_another(pool):
    """Router B holds the old value in its cache (shown by its hit counter);
    a write acknowledged through router A is what B answers next, for every
    write kind."""
    a_ep, b_ep = endpoints(pool)[0], endpoints(pool)[1]
    with flin.Client(a_ep, discover=False) as a, flin.Client(b_ep, discover=False) as b:
        keys = [b"pool:x:%d" % i for i in range(200)]
        for k in keys:
            a.set(k, b"old")
        for k in keys:
            assert b.get(k) == b"old"                        # fills B's cache
        h = cache_hits(b_ep)
        assert [b.get(k) for k in keys] == [b"old"] * len(keys)
        assert cache_hits(b_ep) >= h + len(keys), "B did not cache the keys"
        for k in keys:
            a.set(k, b"new")                                  # acknowledged through A
            assert b.get(k) == b"new", k
        writes = [lambda k: a.delete(k), lambda k: a.set(k, b"5"), lambda k: a.incr(k),
                  lambda k: a.mset({k: b"m"}), lambda k: a.expire(k, 100),
                  lambda k: a.cas(k, b"m", b"c"), lambda k: a.persist(k)]
        expect = [None, b"5", b"6", b"m", b"m", b"c", b"c"]
        for k in keys[:20]:
            a.set(k, b"0")
            for write, value in zip(writes, expect):
                b.get(k)
                h = cache_hits(b_ep)
                b.get(k)                                      # B answers from its cache...
                assert cache_hits(b_ep) == h + 1
                write(k)                                      # ... until A's write
                assert b.get(k) == value, (k, value)
                if value is None:
                    a.set(k, b"0")


def test_writes_to_keys_no_other_router_cached_send_no_notices(pool):
    """The shards tell a router only of the keys it cached (``tracking.py``)."""
    a_ep, b_ep = endpoints(pool)[0], endpoints(pool)[1]

    def noticed() -> int:
        with flin.Client(b_ep, timeout=5, discover=False) as c:
            return c.stats()["router"]["read_cache"]["notices"]
    with flin.Client(a_ep, discover=False) as a, flin.Client(b_ep, discover=False) as b:
        before = noticed()
        for i in range(300):
            a.set(b"pool:quiet:%d" % i, b"v")             # B never read these
        assert noticed() == before
        b.get(b"pool:quiet:7")                             # now B caches one
        a.set(b"pool:quiet:7", b"w")
        assert noticed() == before + 1
        assert b.get(b"pool:quiet:7") == b"w"


def test_never_older_than_acknowledged_under_concurrency(pool):
    """A writer bumps one counter through router A; readers through router B
    (with its cache) check each answer is at least the last value whose write
    was acknowledged before their GET started."""
    a_ep, b_ep = endpoints(pool)[0], endpoints(pool)[1]
    acked = [0]
    stop = threading.Event()
    bad = []
    keys = [b"pool:mono:%d" % i for i in range(4)]

    def writer():
        with flin.Client(a_ep, discover=False) as a:
            n = 0
            while not stop.is_set():
                n += 1
                for k in keys:
                    a.set(k, b"%d" % n)
                acked[0] = n                                  # after all are acknowledged

    def reader():
        with flin.Client(b_ep, discover=False) as b:
            while not stop.is_set():
                floor = acked[0]
                for k in keys:
                    got = int(b.get(k) or 0)
                    if got < floor:
                        bad.append((k, got, floor))
    def loader():
        """Keeps router B in long turns (many frames of cache hits), where a
        request read late in a turn would miss a write its turn began before."""
        from flin.protocol import GET
        with flin.Client(b_ep, discover=False) as b:
            hot = [[GET, b"pool:mono:hot:%d" % i] for i in range(50)]
            while not stop.is_set():
                b.submit_many([hot] * 40)
                got = 0
                while got < 40:
                    got += len(b.receive_all())
    with flin.Client(a_ep, discover=False) as a:
        for k in keys:
            a.set(k, b"0")
        for i in range(50):
            a.set(b"pool:mono:hot:%d" % i, b"h")
    h = cache_hits(b_ep)
    threads = [threading.Thread(target=writer), threading.Thread(target=loader)] + [
        threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    assert not bad, bad[:5]
    assert acked[0] > 50
    assert cache_hits(b_ep) > h + 100, "the readers were not served from B's cache"


def test_a_read_taken_late_in_a_busy_turn_sees_the_write(pool):
    """Router B is busy with one frame of 100,000 cached GETs (hundreds of
    ms); meanwhile a write is acknowledged through A, and then a GET is
    sent to B: B takes it in the same turn, after the keys A wrote have
    reached its links. It must read them before answering from its cache."""
    from flin.protocol import GET
    a_ep, b_ep = endpoints(pool)[0], endpoints(pool)[1]
    with flin.Client(a_ep, discover=False) as a, flin.Client(b_ep, discover=False) as b, \
            flin.Client(b_ep, discover=False, timeout=30) as busy:
        a.set(b"pool:late:hot", b"h")
        for round_ in range(3):
            key = b"pool:late:%d" % round_
            a.set(key, b"old")
            b.get(key)
            h = cache_hits(b_ep)
            assert b.get(key) == b"old" and cache_hits(b_ep) == h + 1   # cached at B
            b.get(b"pool:late:hot")
            rid = busy.submit([[GET, b"pool:late:hot"]] * 100_000)
            time.sleep(0.02)                                  # B is in that frame now
            t0 = time.monotonic()
            a.set(key, b"new")
            assert b.get(key) == b"new"
            took = time.monotonic() - t0
            assert len(busy.collect(rid)) == 100_000
            assert took > 0.02, "B was not busy: the test proves nothing (%.3fs)" % took


def test_scans_and_backups_through_a_pool(pool, tmp_path):
    """A scan whose pages go to different routers is whole and in order; a
    backup through one router of the pool holds every key."""
    with pool.client() as c:
        keys = [b"pool:scan:%04d" % i for i in range(500)]
        c.mset({k: b"v" for k in keys})
        assert list(c.scan_iter(prefix=b"pool:scan:", page=37)) == keys
        before = [requests_at(ep) for ep in endpoints(pool)]
        assert list(c.scan_iter(prefix=b"pool:scan:", page=10)) == keys
        grown = [requests_at(ep) - b - 1 for ep, b in zip(endpoints(pool), before)]
        assert min(grown) >= 5, grown                    # the pages went everywhere
    dest = str(tmp_path / "bk")
    out = subprocess.run([sys.executable, "-m", "flin", "backup", "-e", endpoints(pool)[2], dest],
                         capture_output=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    manifest = json.load(open(dest + "/manifest.json"))
    assert manifest["shards"] == 4 and manifest["data_keys"] >= len(keys)
