"""Catalogue 9-12, 19, 20 and backoff: dead, restarted, stopped, flooded and
starting shards answer with typed errors in time; others are unaffected."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import plyvel
import pytest

from flin import errors, protocol
from flin.protocol import ErrorReply
from tests.support.cluster import ROOT, make_cluster
from tests.support import faults as faultlib


def _timed(fn):
    t0 = time.monotonic()
    try:
        return fn(), None, time.monotonic() - t0
    except errors.FlinError as exc:
        return None, exc, time.monotonic() - t0


def _kill_until_backoff(cluster, shard: int, times: int) -> list[float]:
    """SIGKILL shard's worker ``times`` times in a row; the seconds each
    restart took (kill to new pid)."""
    gaps = []
    pid = faultlib.wait_worker(cluster, shard)
    for _ in range(times):
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        pid = faultlib.wait_worker(cluster, shard, not_pid=pid, timeout=30)
        gaps.append(time.monotonic() - t0)
    return gaps


def test_dead_worker_error_in_time_and_backoff(tmp_short):
    """9 + backoff: a shard whose worker keeps dying is restarted with growing
    delays (not a tight loop), shows its deaths in `flin status --json` and
    Client.status(); while it is dead its requests fail with ShardUnavailable
    within the timeout and the other shards serve."""
    c = make_cluster(tmp_short, 4).start()
    try:
        shard = 1
        mine, cold = faultlib.keys_on(shard, 4, 2)
        other = faultlib.keys_on(2, 4, 1)[0]
        with c.client() as cl:
            cl.set(mine, b"m")
            cl.set(cold, b"c")   # never read: the router's read cache cannot answer for it
            cl.set(other, b"o")
        gaps = _kill_until_backoff(c, shard, 5)
        # delays 0.1, 0.2, 0.4, 0.8, 1.6 s: the last restarts cannot be quick
        assert gaps[-1] >= 1.0 and gaps[-1] > gaps[0], gaps
        with c.client(timeout=3.0, retries=0) as cl:
            faultlib.wait_for(lambda: _timed(lambda: cl.get(mine))[0] == b"m", 10, "shard back")
            pid = faultlib.wait_worker(c, shard)
            os.kill(pid, signal.SIGKILL)           # sixth death: 3.2 s before a restart
            time.sleep(0.3)
            outcomes = []
            for _ in range(3):
                got, exc, took = _timed(lambda: cl.get(cold))
                outcomes.append((got, type(exc).__name__, round(took, 2)))
                assert isinstance(exc, errors.ShardUnavailable), outcomes   # or OutcomeUnknown
                assert took < 2.9, outcomes
                got, exc, took = _timed(lambda: cl.get(other))
                assert got == b"o" and took < 1.0, (got, exc, took)
            st = cl.status()
            assert not st["shards"][shard]["alive"] and st["shards"][shard]["deaths"] >= 5, st
        out = subprocess.run([sys.executable, "-m", "flin", "status", "--endpoint", c.endpoint,
                              "--json"], cwd=ROOT, capture_output=True, timeout=30)
        st = json.loads(out.stdout)
        assert st["shards"][shard]["deaths"] >= 5, st
        assert all(s["deaths"] == 0 for s in st["shards"] if s["id"] != shard), st
        print("\n[backoff] restart delays after repeated SIGKILLs: %s; dead shard answered %s"
              % ([round(g, 2) for g in gaps], outcomes))
        with c.client() as cl:
            faultlib.wait_for(lambda: _timed(lambda: cl.get(mine))[0] == b"m", 15, "shard back")
    finally:
        assert c.stop() == 0


def test_worker_restart_serves_same_data(cluster):
    """10: a SIGKILLed worker is back within seconds with the same data."""
    shard = 3
    keys = faultlib.keys_on(shard, cluster.shards, 200, "rs")
    with cluster.client() as cl:
        cl.mset({k: k + b"!" for k in keys})
    pid = faultlib.wait_worker(cluster, shard)
    with cluster.client(timeout=1.0, retries=0) as cl:
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        faultlib.wait_for(lambda: _timed(lambda: cl.get(keys[0]))[0] == keys[0] + b"!",
                          10, "the shard to serve again", every=0.005)
        took = time.monotonic() - t0
        assert cl.mget(keys) == [k + b"!" for k in keys]
    print("\n[catalogue 10] time to recover a SIGKILLed shard: %.3fs" % took)
    assert faultlib.wait_worker(cluster, shard) != pid


def test_status_uptime_is_the_routers_own_and_resets_when_it_restarts(cluster):
    """STATUS reports how long this router process has run, not the
    supervisor's age: a restarted router starts again from zero."""
    time.sleep(1.2)
    with cluster.client(timeout=5.0) as cl:
        before = cl.status()["router"]
    assert before["uptime"] >= 1.0
    # short calls: a request lost with the dead router must not hide the new one
    with cluster.client(timeout=0.3, retries=0) as cl:
        os.kill(before["pid"], signal.SIGKILL)
        killed = time.monotonic()
        after = faultlib.wait_for(
            lambda: _status_of_a_new_router(cl, before["pid"]), 10, "a new router")
        since_kill = time.monotonic() - killed
    # the new router's uptime counts from its own start, after the kill (the
    # supervisor's age, reported before, would be >= 1.2 s more than this)
    assert after["uptime"] <= since_kill, (before, after, since_kill)
    assert after["deaths"] == 1


def _status_of_a_new_router(cl, old_pid: int):
    try:
        st = cl.status()["router"]
    except errors.FlinError:
        return None
    return st if st["pid"] != old_pid else None


def test_stopped_worker_detected_fails_fast(tmp_short):
    """11: SIGSTOP: the first request fails after shard_timeout, later ones at
    once with ShardUnavailable, other shards serve; SIGCONT: it serves again."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "0.5"]).start()
    shard = 0
    mine = faultlib.keys_on(shard, 4, 1)[0]
    other = faultlib.keys_on(3, 4, 1)[0]
    pid = faultlib.wait_worker(c, shard)
    try:
        with c.client(timeout=5.0, retries=0) as cl:
            cl.set(mine, b"m")
            cl.set(other, b"o")
            os.kill(pid, signal.SIGSTOP)
            _, exc, first = _timed(lambda: cl.set(mine, b"x"))
            assert isinstance(exc, errors.ShardUnavailable), exc   # OutcomeUnknown is one
            assert first < 2.5, first
            fast = []
            for _ in range(5):
                _, exc, took = _timed(lambda: cl.get(mine))
                assert type(exc) is errors.ShardUnavailable, exc
                fast.append(took)
                assert cl.get(other) == b"o"
            assert max(fast) < 0.45, fast                      # under shard_timeout
            os.kill(pid, signal.SIGCONT)
            faultlib.wait_for(lambda: _timed(lambda: cl.get(other))[0] == b"o"
                              and _timed(lambda: cl.get(mine))[0] in (b"m", b"x"), 10,
                              "the shard to serve after SIGCONT")
        print("\n[catalogue 11] stopped shard: first failure %.2fs, then %.4fs at most"
              % (first, max(fast)))
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0


def test_flood_stopped_shard_overloaded_bounded(tmp_short):
    """12: flood a SIGSTOPped shard: Overloaded at once past the queue, every
    request answered (none dropped), router memory bounded."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "30", "--shard-queue", "200"]).start()
    shard = 2
    keys = faultlib.keys_on(shard, 4, 50, "fl")
    other = faultlib.keys_on(1, 4, 1)[0]
    pid = faultlib.wait_worker(c, shard)
    router = faultlib.router_pid(c)
    value = os.urandom(8192)     # 10,000 SETs: 80 MB offered
    try:
        with c.client(timeout=30.0, retries=0) as cl:
            cl.set(other, b"o")
            cl.set(keys[0], b"before")
            rss0 = faultlib.vmrss_kb(router)
            os.kill(pid, signal.SIGSTOP)
            total, window = 20_000, 1000
            answers: dict = {}
            inflight: set = set()
            sent = 0
            t0 = time.monotonic()
            while sent < total:           # keep `window` requests in flight
                while sent < total and len(inflight) < window:
                    key = keys[sent % 50]
                    cmd = [protocol.SET, key, value, None, 0] if sent % 2 else [protocol.GET, key]
                    inflight.add(cl.submit([cmd]))
                    sent += 1
                rid, res = cl.receive(10.0)
                assert rid not in answers, "two answers for request %d" % rid
                answers[rid] = res[0]
                inflight.discard(rid)
            while True:                   # take the answers still on their way
                try:
                    rid, res = cl.receive(1.0)
                except errors.Timeout:
                    break
                assert rid not in answers, "two answers for request %d" % rid
                answers[rid] = res[0]
                inflight.discard(rid)
            flood_s = time.monotonic() - t0
            rss1 = faultlib.vmrss_kb(router)
            over = sum(1 for r in answers.values()
                       if isinstance(r, ErrorReply) and r.code == errors.Overloaded.code)
            stuck = len(inflight)
            # a new request for the stopped shard: Overloaded at once
            _, exc, took = _timed(lambda: cl.get(keys[1]))
            assert type(exc) is errors.Overloaded and took < 1.0, (exc, took)
            assert cl.get(other) == b"o"                        # other shards unaffected
            os.kill(pid, signal.SIGCONT)
            while len(answers) < total:                          # the queued ones finish
                rid, res = cl.receive(20.0)
                assert rid not in answers, "two answers for request %d" % rid
                answers[rid] = res[0]
                inflight.discard(rid)
        print("\n[catalogue 12] %d requests to a stopped shard in %.1fs: %d Overloaded, "
              "%d held until SIGCONT, all answered; router VmRSS %d -> %d KiB"
              % (total, flood_s, over, stuck, rss0, rss1))
        assert len(answers) == total and not inflight
        assert stuck <= 3 * 200, stuck     # the queue cap, plus two batches of at most as many
        assert over >= total - 1000, over
        assert rss1 - rss0 < 40_000, (rss0, rss1)   # the 80 MB offered were not kept
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0


def test_shard_folder_locked_and_second_start_refused(cluster):
    """19: LevelDB's LOCK refuses a second opener of a live shard folder, and a
    second `flin start` on the same data folder is refused."""
    with pytest.raises(plyvel.IOError, match="(?i)lock"):
        plyvel.DB(os.path.join(cluster.data, "shard-00"))
    out = subprocess.run(
        [sys.executable, "-m", "flin", "start", "--data", cluster.data, "--shards",
         str(cluster.shards), "--bind", cluster.endpoint + "2"],
        cwd=ROOT, capture_output=True, timeout=30)
    assert out.returncode != 0 and b"already serves" in out.stderr, out
    with cluster.client() as cl:                      # the first cluster is untouched
        cl.set("lock:a", b"1")
        assert cl.get("lock:a") == b"1"
        assert all(s["alive"] for s in cl.status()["shards"])


def test_requests_while_shard_starting(tmp_short):
    """20: while a shard is still opening its LevelDB (held up on a FIFO in
    place of its CURRENT file), its requests get a retryable ShardUnavailable
    at once, the others are served; then it comes up."""
    c = make_cluster(tmp_short, 4).start()
    shard = 3
    mine = faultlib.keys_on(shard, 4, 1)[0]
    other = faultlib.keys_on(0, 4, 1)[0]
    with c.client() as cl:
        cl.set(mine, b"m")
        cl.set(other, b"o")
    assert c.stop() == 0
    current = os.path.join(c.data, "shard-%02d" % shard, "CURRENT")
    with open(current, "rb") as f:
        content = f.read()
    os.unlink(current)
    os.mkfifo(current)
    fed = []

    def feed():
        if not fed:
            fed.append(1)
            with open(current, "wb") as f:      # unblocks the worker's open()
                f.write(content)

    starter = threading.Thread(target=c.start)
    starter.start()
    try:
        with c.client(timeout=3.0, retries=0) as cl:
            faultlib.wait_for(lambda: _timed(lambda: cl.get(other))[0] == b"o", 20,
                              "the other shards to serve")
            for _ in range(3):
                _, exc, took = _timed(lambda: cl.get(mine))
                assert type(exc) is errors.ShardUnavailable and exc.retryable, exc
                assert took < 1.0, took
            assert c.proc.poll() is None and starter.is_alive()    # not ready yet
            feed()
            starter.join(20)
            assert not starter.is_alive()
            faultlib.wait_for(lambda: _timed(lambda: cl.get(mine))[0] == b"m", 10,
                              "the starting shard to serve")
    finally:
        if os.path.exists(current) and not fed:
            feed()
        starter.join(20)
        if c.proc is not None:
            assert c.stop() == 0
