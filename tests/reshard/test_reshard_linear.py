"""Single-key linearizability across a live reshard: three client processes
run GET/SET/CAS on keys that move (2 -> 5 shards) while the reshard copies,
fences and switches; each key's history, recorded with start and end times,
must be linearizable (the checker of ``faults/test_linearizability.py``; an
op whose outcome is unknown may or may not have happened). A GET that starts
after a SET was acknowledged returns that value or a newer one."""
from __future__ import annotations

import os
import time

import pytest

from flin.ring import Ring
from tests.faults.test_linearizability import histories, linearizable
from tests.reshard.test_reshard import _preload, _progress, _wait_for, reshard
from tests.support import faults as faultlib
from tests.support.cluster import make_cluster


def _moving_keys(n: int, m: int, count: int) -> list[str]:
    old, new = Ring(n), Ring(m)
    keys, i = [], 0
    while len(keys) < count:
        k = "lin:%d" % i
        if old.shard(k.encode()) != new.shard(k.encode()):
            keys.append(k)
        i += 1
    return keys


@pytest.mark.parametrize("routers", [
    "1",
    # a known bug, found 2026-12-01 and not fixed yet: with two routers and
    # their read caches, about one run in five returns a stale read across
    # the reshard (a GET answered an older value after two later SETs were
    # acknowledged through the other router); seen at a084334 too, before
    # the replicas work. Kept running, so that it shows (XFAIL) until fixed.
    pytest.param("2", marks=pytest.mark.xfail(
        strict=False, reason="stale read across a --no-pause reshard with 2 routers' "
                             "read caches (known, intermittent)")),
])
def test_single_key_histories_across_a_reshard_are_linearizable(tmp_short, routers):
    """With 2 routers the clients spread over both, each with its read cache."""
    c = make_cluster(tmp_short, 2, ["--routers", routers]).start()
    keys = _moving_keys(2, 5, 3)
    outs = [os.path.join(tmp_short, "lin-%d.json" % i) for i in range(3)]
    try:
        _preload(c)
        procs = [faultlib.spawn(["lin", c.endpoint, "p%d" % i, "6", str(i), outs[i], *keys])
                 for i in range(3)]
        try:
            time.sleep(0.5)
            reshard(c, 5, "--rate", "8", "--no-wait", "--no-pause")   # the fence alone
            _wait_for(lambda: _progress(c).get("state") == "done", 30)
        finally:
            faultlib.reap(procs, 60)
        assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
        steps = _progress(c)["steps"]
    finally:
        assert c.stop() == 0
    for key, ops in histories(outs, keys).items():
        assert len(ops) >= 50, (key, len(ops))
        assert linearizable(ops), "history of %s is not linearizable: %s" % (
            key, sorted(ops, key=lambda o: o[0]))
    assert steps["copy"] > 0.5          # the histories overlapped a copy, not only a switch
