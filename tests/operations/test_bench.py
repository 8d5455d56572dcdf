"""``flin bench`` runs end to end (its own cluster, the engine baseline, and
Redis when installed) and its JSON is whole and consistent. No timing
assertions: the figures only have to be positive and add up."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from flin_perf.workload import Plan, phases_for, written_range
from tests.support.cluster import ROOT

try:
    import redis  # noqa: F401  (the harness drives redis-server through redis-py)
    HAVE_REDIS = shutil.which("redis-server") is not None
except ImportError:  # flin[perf] not installed: the harness skips Redis with a message
    HAVE_REDIS = False


def bench(tmp_path, *args: str) -> tuple[dict, str, str]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "flin", "bench", "--shards", "4", "--workers", "4",
         "--duration", "0.3", "--keys", "20000", "--no-progress", "--json", str(out), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = re.search(r"cluster in (\S+)", proc.stderr)
    assert folder, proc.stderr
    assert not os.path.exists(os.path.dirname(folder.group(1))), "temp folder left behind"
    with open(out) as f:
        return json.load(f), proc.stdout, proc.stderr


def check_result(r: dict, batch: int) -> None:
    assert r["errors"] == 0, r["error_samples"]
    assert r["ops"] > 0 and r["requests"] > 0
    assert r["ops_per_sec"] > 0 and r["requests_per_sec"] > 0
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    # every key handed out was acknowledged (the load drains what is in flight)
    if r["phase"] in ("write", "read", "incr", "zipf", "mixed"):
        assert r["ops"] == sum(r["issued_per_process"]) == r["requests"] * batch
    if r["phase"] in ("read", "zipf"):
        assert r["misses"] == 0, "a read phase read a key the write phase did not write"
    assert r["ops_per_sec"] == pytest.approx(r["ops"] / r["elapsed_s"], rel=0.01)
    assert r["inverse_throughput_us"] == pytest.approx(1e6 / r["ops_per_sec"], rel=0.01)
    assert r["load_cpu"]["cpu_s"] > 0 and r["load_cpu"]["processes"] >= 1


def test_bench_default_shape_with_baselines(tmp_path):
    doc, stdout, stderr = bench(tmp_path, "--baseline", "engine", "--baseline", "redis")
    assert set(doc) >= {"config", "machine", "versions", "results", "ratios"}
    assert doc["config"]["workers"] == 4 and doc["config"]["batch"] == 1
    assert doc["machine"]["cores"] >= 1
    targets = ["flin", "engine"] + (["redis"] if HAVE_REDIS else [])
    got = [(r["target"], r["phase"]) for r in doc["results"]]
    assert got == [(t, p) for t in targets for p in ("write", "read")]
    for r in doc["results"]:
        check_result(r, 1)
        assert (r["target"] == "engine") == (r["load_cpu"]["processes"] == 1)
    flin_write = doc["results"][0]
    assert flin_write["server_cpu_cores"].get("shards", 0) > 0
    per_op = flin_write["server_cpu_us_per_op"]
    assert per_op["total"] > 0 and per_op["total"] == pytest.approx(
        sum(v for k, v in per_op.items() if k != "total"), abs=0.05 * len(per_op))
    assert "srv us/op" in stdout
    assert 0 < doc["results"][1]["key_range"] <= flin_write["ops"]  # reads hit written keys
    for phase in ("write", "read"):
        assert set(doc["ratios"][phase]) == set(targets) - {"flin"}
        for v in doc["ratios"][phase].values():
            assert v > 0
    if not HAVE_REDIS:
        assert any("redis" in s for s in doc["skipped"])
        assert "skipping the redis baseline" in stderr
    assert re.search(r"^flin +WRITE +[0-9,]+ ", stdout, re.M)
    assert re.search(r"^flin +READ +[0-9,]+ ", stdout, re.M)
    for words in ("p50 ms", "p99 ms", "p99.9 ms", "1/throughput"):
        assert words in stdout


def test_bench_batches_pipelines_and_workloads(tmp_path):
    doc, stdout, _ = bench(tmp_path, "--batch", "5", "--pipeline", "2", "--processes", "1",
                           "--workload", "zipf", "--workload", "scan", "--workload", "incr")
    assert [r["phase"] for r in doc["results"]] == ["write", "zipf", "scan", "incr"]
    for r in doc["results"]:
        check_result(r, 5)
    scan = doc["results"][2]
    assert scan["ops"] <= scan["requests"] * doc["config"]["scan_limit"]


def test_phases_and_key_ranges():
    assert phases_for(("write", "read")) == ["write", "read"]
    assert phases_for(("zipf",)) == ["write", "zipf"]
    assert phases_for(("incr",)) == ["incr"]
    with pytest.raises(ValueError):
        phases_for(("nope",))
    # two processes stripe the key space: together they cover 0..2*min-1
    plans = [Plan("write", batch=3, keys=100, key_range=0, proc=p, procs=2, seed=1)
             for p in range(2)]
    written = set()
    for plan, n in zip(plans, (4, 3)):
        for _ in range(n):
            written.update(plan.next()[1])
    top = written_range([p.issued for p in plans], 2, 100)
    assert top == 18 and set(range(top)) <= written
    reader = Plan("zipf", batch=50, keys=100, key_range=top, proc=0, procs=2, seed=1)
    assert all(0 <= i < top for _ in range(20) for i in reader.next()[1])


@pytest.mark.parametrize("client", ["asyncio", "uvloop"])
def test_bench_through_the_asyncio_client(tmp_path, client):
    if client == "uvloop":
        pytest.importorskip("uvloop")
    for batch in ("1", "10"):
        doc, stdout, _ = bench(tmp_path, "--client", client, "--batch", batch, "--workload",
                               "write", "--workload", "read", "--workload", "scan",
                               "--workload", "incr")
        assert doc["config"]["client"] == client
        assert "(%s client)" % client in stdout
        assert [r["phase"] for r in doc["results"]] == ["write", "read", "scan", "incr"]
        for r in doc["results"]:
            check_result(r, int(batch))
