"""Catalogue 1, 2, 7, 8: acknowledged writes survive SIGKILLed workers, a
SIGKILLed router and a SIGKILLed supervisor; a retried INCR applies once."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import zmq

from flin import protocol
from tests.support.cluster import alive, make_cluster
from tests.support import faults as faultlib
from tests.support.faults import SOAK

CLIENTS = 3


def _storm(cluster, folder: str, seconds: float, target: str, pause=(0.3, 0.8)) -> tuple[int, list]:
    """Run CLIENTS storm processes while killing ``target``; their reports."""
    outs = [os.path.join(folder, "storm-%d.json" % i) for i in range(CLIENTS)]
    procs = [faultlib.spawn(["storm", cluster.endpoint, "c%d" % i, str(seconds), outs[i]])
             for i in range(CLIENTS)]
    try:
        time.sleep(0.5)   # let them start (imports) before the first kill
        kills = faultlib.killer(cluster, seconds - 0.5, target, pause)
    finally:
        faultlib.reap(procs, 30)
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    reports = []
    for out in outs:
        with open(out) as f:
            reports.append(json.load(f))
    return kills, reports


def _check(cluster, reports: list) -> dict:
    """Read every acknowledged key back; count what was lost."""
    faultlib.all_up(cluster)
    lost, acked, unique = [], 0, 0
    with cluster.client(timeout=10.0) as c:
        for rep in reports:
            acked += rep["stats"]["acked"]
            hot = sorted(rep["acked"])
            for key, got in zip(hot, c.mget(hot)):
                allowed = {rep["acked"][key], *rep["maybe"].get(key, [])}
                if got is None or got.decode() not in allowed:
                    lost.append((key, got, rep["acked"][key]))
            ins = sorted(rep["inserted"])
            unique += len(ins)
            for i in range(0, len(ins), 1000):
                chunk = ins[i:i + 1000]
                for key, got in zip(chunk, c.mget(chunk)):
                    if got is None or got.decode() != rep["inserted"][key]:
                        lost.append((key, got, rep["inserted"][key]))
    return {"acked": acked, "unique": unique, "lost": lost}


def _storm_and_verify(tmp_short: str, target: str, seconds: float, pause) -> None:
    c = make_cluster(tmp_short, 8, ["--shard-timeout", "1"]).start()
    try:
        kills, reports = _storm(c, tmp_short, seconds, target, pause)
        wrong = [w for r in reports for w in r["wrong"]]
        failed = sum(r["stats"]["failed"] for r in reports)
        errs: dict = {}
        for r in reports:
            for k, v in r["stats"]["errors"].items():
                errs[k] = errs.get(k, 0) + v
        live = _check(c, reports)
        assert c.stop() == 0
        c.start()                     # and after a full restart
        after = _check(c, reports)
    finally:
        if c.proc is not None:
            c.stop()
    print("\n[catalogue %s] %s SIGKILLs survived; writes acknowledged %d (unique keys %d), "
          "failed %d %s; writes lost %d live, %d after restart; wrong reads %d"
          % ("1/7" if target == "worker" else "2", kills, live["acked"], live["unique"],
             failed, errs, len(live["lost"]), len(after["lost"]), len(wrong)))
    assert kills >= 3, "the killer found nothing to kill"
    assert live["acked"] > 100, "too few writes were acknowledged to mean anything"
    assert not wrong, "reads no write explains: %s" % wrong[:5]
    assert not live["lost"], "acknowledged writes lost: %s" % live["lost"][:5]
    assert not after["lost"], "acknowledged writes lost after restart: %s" % after["lost"][:5]


def test_kill_workers_during_write_storm(tmp_short):
    """1 + 7: SIGKILL random workers under hot-key overwrites and unique inserts
    from several client processes; every acknowledged write is there."""
    _storm_and_verify(tmp_short, "worker", 6.0, (0.3, 0.7))


def test_kill_router_during_write_storm(tmp_short):
    """2: SIGKILL the router under load: errors and timeouts only, never a
    wrong answer; acknowledged data all there."""
    _storm_and_verify(tmp_short, "router", 7.0, (1.0, 2.0))


@pytest.mark.soak
@pytest.mark.parametrize("target", ["worker", "router"])
def test_kill_storm_soak(tmp_short, target):
    _storm_and_verify(tmp_short, target, 60.0 if SOAK else 10.0,
                      (0.2, 0.6) if target == "worker" else (1.0, 3.0))


def test_kill_supervisor(tmp_short):
    """2: SIGKILL of the supervisor: its children exit by themselves
    (PDEATHSIG), the data folder starts again with acknowledged data."""
    c = make_cluster(tmp_short, 4).start()
    try:
        with c.client() as cl:
            cl.mset({"sup:%d" % i: b"v%d" % i for i in range(500)})
        children = c.child_pids()
        assert len(children) == 5, children
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        c.proc.stdout.close()
        c.proc = None
        faultlib.wait_for(lambda: not any(alive(p) for p in children), 15,
                          "the children of a SIGKILLed supervisor to exit")
        c.start()
        with c.client() as cl:
            assert cl.mget(["sup:%d" % i for i in range(500)]) == [b"v%d" % i for i in range(500)]
    finally:
        for p in children:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if c.proc is not None:
            assert c.stop() == 0


def test_incr_retried_with_same_uid_applies_once(cluster):
    """8: the same INCR request uid sent twice, and a reply really lost (the
    client's socket closed before it came), then retried: applied once."""
    with cluster.client() as c:
        uid = os.urandom(12)
        assert c.execute([[protocol.INCR, b"ctr:a", 1, uid]]) == [1]
        assert c.execute([[protocol.INCR, b"ctr:a", 1, uid]]) == [1]
        assert c.get("ctr:a") == b"1"
        assert c.execute([[protocol.INCR, b"ctr:a", 1, os.urandom(12)]]) == [2]  # a new uid counts

        uid2 = os.urandom(12)
        ctx = zmq.Context()
        try:
            d = ctx.socket(zmq.DEALER)
            d.connect(cluster.endpoint)
            d.send(protocol.encode(7, [[protocol.INCR, b"ctr:a", 5, uid2]]))
            d.close(linger=2000)      # gone before the reply: the router drops it
        finally:
            ctx.term()
        faultlib.wait_for(lambda: c.get("ctr:a") == b"7", 10, "the lost-reply INCR to apply")
        assert c.execute([[protocol.INCR, b"ctr:a", 5, uid2]]) == [7]
        assert c.get("ctr:a") == b"7"

        # the remembered uid survives a worker restart
        shard = faultlib.shard_of(b"ctr:a", cluster.shards)
        old = faultlib.wait_worker(cluster, shard)
        os.kill(old, signal.SIGKILL)
        faultlib.wait_worker(cluster, shard, not_pid=old)
        assert c.incr("ctr:a", 0) == 7   # client retries until the shard is back
        assert c.execute([[protocol.INCR, b"ctr:a", 5, uid2]]) == [7]
        assert c.get("ctr:a") == b"7"
        st = c.status()
        assert st["shards"][shard]["alive"]
