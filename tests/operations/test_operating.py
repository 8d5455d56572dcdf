"""Operating Flin through real processes: ``flin stats`` (and ``--watch``,
``--json``, hot shards), the Prometheus exporter (scraped over HTTP),
``flin compact``, ``flin backup`` / ``flin restore`` (100,000 keys under
concurrent writes), ``flin start --detach`` with its log file, and the admin
ops' validation."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from tests.support.cluster import ROOT, alive, descendants, make_cluster
from flin import errors, protocol
from flin.ring import Ring

OK, USAGE, SERVER = 0, 2, 4


def flin(*args: str, check_rc: int | None = OK, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIN_")}
    env["PYTHONPATH"] = ROOT
    p = subprocess.run([sys.executable, "-m", "flin", *args], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=timeout)
    if check_rc is not None:
        assert p.returncode == check_rc, (args, p.returncode, p.stdout, p.stderr)
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keys_on(shard: int, shards: int, n: int, prefix: str) -> list[bytes]:
    ring, out, i = Ring(shards), [], 0
    while len(out) < n:
        k = b"%s%d" % (prefix.encode(), i)
        if ring.shard(k) == shard:
            out.append(k)
        i += 1
    return out


@pytest.fixture(scope="module")
def mcluster():
    """An 8-shard cluster with the Prometheus exporter on a free port."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        port = _free_port()
        c = make_cluster(d, extra=["--metrics-port", str(port)]).start()
        c.metrics_port = port
        yield c
        if c.proc is not None:
            assert c.stop() == 0


HOT = 3


@pytest.fixture(scope="module")
def loaded(mcluster):
    """Some load everywhere, much more on shard HOT, and one error."""
    with mcluster.client() as c:
        c.mset({b"spread:%d" % i: b"v%d" % i for i in range(400)})
        for k in _keys_on(HOT, 8, 50, "hot:"):
            c.set(k, b"x")
        hot = _keys_on(HOT, 8, 50, "hot:")
        for _ in range(40):
            with c.pipeline() as p:
                for k in hot:
                    p.set(k, b"y")      # writes reach the shard: its load
        for _ in range(40):
            with c.pipeline() as p:
                for k in hot:
                    p.get(k)            # reads after the first come from the router's cache
        c.set(b"notint", b"abc")
        with pytest.raises(errors.NotAnInteger):
            c.incr(b"notint")
    return mcluster


def test_stats_from_the_client(loaded):
    with loaded.client() as c:
        c.get(b"spread:1")
        st = c.stats()
    r = st["router"]
    assert r["requests"] > 0 and r["in_flight"] >= 1 and r["uptime_s"] > 0
    assert r["errors"].get("NotAnInteger") == 1
    assert len(r["queues"]) == 8 and all(q["state"] == "up" for q in r["queues"])
    assert r["latency"]["get"]["count"] >= 1 and r["latency"]["get"]["p99_ms"] > 0
    assert r["latency"]["pipeline"]["count"] >= 80
    assert r["ring"] == Ring(8).params()
    shards = st["shards"]
    assert [s["id"] for s in shards] == list(range(8)) and all(s["alive"] for s in shards)
    hot = shards[HOT]
    assert hot["ops"]["set"] >= 2000
    assert sum(s["errors"].get("NotAnInteger", 0) for s in shards) == 1
    assert sum(s["keys"] for s in shards) >= 451 and not any(s["keys_estimated"] for s in shards)
    assert all(s["disk_bytes"] > 0 for s in shards)
    assert hot["cache"]["hits"] + hot["cache"]["misses"] >= 2000 and hot["cache"]["hits"] > 0
    assert "Compactions" in hot["leveldb_stats"]


def test_stats_cli_table_json_watch_and_hot_shard(loaded):
    ep = loaded.endpoint
    out = flin("stats", "-e", ep).stdout
    assert "latency (ms)" in out and "p99" in out and "total keys" in out
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s*(\d+)\s+\d+ .*$", out, re.M)}
    assert "HOT" in rows[HOT], out
    assert not any("HOT" in row for s, row in rows.items() if s != HOT), out
    st = json.loads(flin("stats", "-e", ep, "--json").stdout)
    assert len(st["shards"]) == 8 and "latency" in st["router"]
    out = flin("stats", "-e", ep, "--watch", "--interval", "0.2", "--count", "2").stdout
    assert out.count("latency (ms)") == 2 and "ops/s" in out and "requests/s" in out
    lines = flin("stats", "-e", ep, "--watch", "--json", "--interval", "0.1", "--count", "3").stdout
    assert len([json.loads(x) for x in lines.splitlines() if x.strip()]) == 3


def test_metrics_scrape(loaded):
    from prometheus_client.parser import text_string_to_metric_families
    url = "http://127.0.0.1:%d/metrics" % loaded.metrics_port
    deadline = time.monotonic() + 15
    while True:
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    samples: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples.setdefault(s.name, []).append(s)

    def one(name: str, **labels: str) -> float:
        got = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(got) == 1, (name, labels, got)
        return got[0]
    assert one("flin_up") == 1
    assert one("flin_requests_total", op="set", shard=str(HOT)) >= 2000
    assert one("flin_router_errors_total", code="NotAnInteger") == 1
    assert one("flin_router_requests_total") > 0
    assert one("flin_shard_up", shard="0") == 1
    assert one("flin_shard_hot", shard=str(HOT)) == 1 and one("flin_shard_hot", shard="0") == 0
    assert one("flin_shard_keys", shard=str(HOT)) >= 50
    assert one("flin_request_duration_seconds_count", op="pipeline") >= 40
    assert one("flin_request_duration_seconds_bucket", op="pipeline", le="+Inf") >= 40
    assert len(samples["flin_shard_queue_depth"]) == 8
    assert one("flin_shard_read_cache_hits_total", shard=str(HOT)) > 0


def test_compact_online(mcluster):
    ep = mcluster.endpoint
    with mcluster.client() as c:
        c.mset({b"compact:%d" % i: b"x" * 100 for i in range(2000)})
        c.delete(*[b"compact:%d" % i for i in range(1000)])
    out = flin("compact", "-e", ep, "--shard", "5").stdout
    assert "compacted 1 shard(s)" in out
    out = flin("compact", "-e", ep).stdout
    assert "compacted 8 shard(s)" in out
    with mcluster.client() as c:
        shards = c.stats()["shards"]
        assert shards[5]["compaction"]["runs"] == 2 and shards[0]["compaction"]["runs"] == 1
        assert not any(s["compaction"]["running"] or s["compaction"]["error"] for s in shards)
        assert c.get(b"compact:1500") == b"x" * 100 and c.get(b"compact:5") is None
    p = flin("compact", "-e", ep, "--shard", "8", check_rc=SERVER)
    assert "BadRequest" in p.stderr


def test_admin_ops_are_validated(shared_cluster):
    with shared_cluster.client() as c:
        bad = [[protocol.SHARD, 8, [protocol.STATS]], [protocol.SHARD, -1, [protocol.STATS]],
               [protocol.SHARD, 0, [protocol.GET, b"k"]], [protocol.SHARD, 0, [protocol.SET]],
               [protocol.SHARD, 0, [protocol.SNAPSHOT_READ, 1, None, 0, 100]],
               [protocol.SHARD, 0, [protocol.SNAPSHOT_READ, 1, "str", 10, 100]],
               [protocol.SHARD, 0, [protocol.SNAPSHOT_CLOSE, "x"]], [protocol.SHARD, 0, [[1]]],
               [protocol.SHARD, 0], [protocol.STATS, 1]]
        for r in c.execute(bad):
            assert isinstance(r, protocol.ErrorReply) and r.code == errors.BadRequest.code, r
        with pytest.raises(errors.BadRequest, match="no snapshot"):
            c.snapshot_read(0, 12345)
        c.mset({b"snap:%d" % i: b"%d" % i for i in range(300)})
        ring = Ring(8)
        on0 = [k for k in (b"snap:%d" % i for i in range(300)) if ring.shard(k) == 0]
        sid = c.snapshot_open(0)
        c.delete(*on0)                       # not seen by the snapshot
        seen, cursor = [], None
        while True:
            page, cursor = c.snapshot_read(0, sid, cursor, limit=7)
            assert len(page) <= 7
            seen += [k for k, _ in page]
            if cursor is None:
                break
        assert set(b"d" + k for k in on0) <= set(seen) and seen == sorted(seen)
        assert c.shard_stats(0)["snapshots"] == 1
        assert c.snapshot_close(0, sid) is True and c.snapshot_close(0, sid) is False


def test_backup_restore_100k_under_writes(tmp_short):
    src = make_cluster(tmp_short).start()
    restored = None
    try:
        expected: dict[bytes, bytes] = {}
        with src.client(timeout=60) as c:
            with c.pipeline() as p:            # 100,000 keys in ten pipelined MSETs
                for j in range(10):
                    chunk = {b"bk:%06d" % i: b"value-%d-" % i + os.urandom(i % 40)
                             for i in range(j * 10_000, (j + 1) * 10_000)}
                    expected.update(chunk)
                    p.mset(chunk, ttl=3600 if j < 2 else None)   # 20,000 with an expiry
            assert all(r is None for r in p.results)
            c.mset({b"gone:%d" % i: b"x" for i in range(100)}, ttl=0.05)
            uids = {}
            for i in range(500):               # counters, with request uids remembered
                uids[b"ctr:%d" % i] = os.urandom(12)
            assert c.execute([[protocol.INCR, k, int(k[4:]) + 1, uid]      # one raw request
                              for k, uid in uids.items()]) == [i + 1 for i in range(500)]
            for i in range(500):
                expected[b"ctr:%d" % i] = b"%d" % (i + 1)
            time.sleep(0.1)

        acked, stop = {}, threading.Event()

        def writer() -> None:                  # keeps writing during the backup
            with src.client() as w:
                n = 0
                while not stop.is_set():
                    w.mset({b"live:%d" % n: b"%d" % n, b"bk:000007": b"over-%d" % n})
                    acked["n"] = n
                    n += 1
        t = threading.Thread(target=writer)
        t.start()
        while "n" not in acked:
            time.sleep(0.01)
        before = acked["n"]                    # acknowledged before the backup began
        dest = os.path.join(tmp_short, "bk")
        try:
            out = flin("backup", "-e", src.endpoint, dest).stdout
        finally:
            stop.set()
            t.join()
        assert "backup: 8 shards" in out and "keys/s" in out and "MB/s" in out
        m = json.load(open(os.path.join(dest, "manifest.json")))
        assert m["shards"] == 8 and m["ring"] == Ring(8).params() and len(m["files"]) == 8
        assert m["data_keys"] >= 100_500 + before
        assert sum(f["entries"] for f in m["files"]) == m["entries"] > m["data_keys"]
        assert all(len(f["sha256"]) == 64 for f in m["files"])

        # refused: a non-empty target; a damaged file (and nothing left behind)
        busy = os.path.join(tmp_short, "busy")
        os.makedirs(busy)
        open(os.path.join(busy, "x"), "w").close()
        assert "not empty" in flin("restore", dest, "--data", busy, check_rc=USAGE).stderr
        bad = os.path.join(tmp_short, "bad")
        shutil.copytree(dest, bad)
        with open(os.path.join(bad, "shard-03.dump"), "r+b") as f:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 1]))
        target = os.path.join(tmp_short, "r-bad")
        p = flin("restore", bad, "--data", target, check_rc=USAGE)
        assert "sha256" in p.stderr and not os.path.exists(target)

        data = os.path.join(tmp_short, "r", "data")
        out = flin("restore", dest, "--data", data).stdout
        assert "restore: 8 shards" in out and "keys/s" in out
        assert src.stop() == 0
        restored = make_cluster(os.path.join(tmp_short, "r")).start()
        with restored.client(timeout=60) as c:
            got = dict(c.scan_iter(b"", values=True, page=10_000))
            for k, v in expected.items():
                if k != b"bk:000007":
                    assert got.get(k) == v, k
            assert int(got[b"bk:000007"].split(b"-")[1]) >= before   # overwritten before the cut
            assert all(got.get(b"live:%d" % n) == b"%d" % n for n in range(before + 1))
            assert not any(k.startswith(b"gone:") for k in got)
            assert 3000 < c.ttl(b"bk:000100") <= 3600 and c.ttl(b"bk:050000") == -1
            # a remembered INCR uid survives: the retry is answered, not applied again
            assert c.execute([[protocol.INCR, b"ctr:9", 10, uids[b"ctr:9"]]]) == [10]
            assert c.get(b"ctr:9") == b"10"
    finally:
        for cl in (src, restored):
            if cl is not None and cl.proc is not None:
                cl.stop()


def test_detach_logs_and_stop(tmp_short):
    data = os.path.join(tmp_short, "data")
    ep = "ipc://" + os.path.join(tmp_short, "d.sock")
    out = flin("start", "--detach", "--data", data, "--shards", "3", "--bind", ep,
               "--log-level", "DEBUG").stdout
    assert "ready" in out and "detached" in out
    sup = int(open(os.path.join(data, "flin.lock")).read().split()[0])   # "PID supervisor"
    pids = descendants(sup) | {sup}
    try:
        assert len(pids) == 5                  # supervisor, router, 3 workers
        p = flin("start", "--detach", "--data", data, "--shards", "3", "--bind", ep,
                 check_rc=USAGE)
        assert "already serves" in p.stderr
        flin("set", "-e", ep, "k", "v")
    finally:
        assert "stopped" in flin("stop", "--data", data).stdout
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)]
    lines = open(os.path.join(data, "flin.log")).read().splitlines()
    shard_lines = [x for x in lines if " flin.shard " in x]
    assert shard_lines and all(re.search(r" shard-\d ", x) for x in shard_lines)
    assert any("shard-2 flin.shard DEBUG shard 2: closed" in x for x in lines)   # per shard: DEBUG
    assert any(" router flin.router " in x for x in lines)
    assert any(" supervisor flin.supervisor INFO stopped" in x for x in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ \S+ \S+ [A-Z]+ ", x)
               or x.startswith("flin: ") for x in lines), lines
