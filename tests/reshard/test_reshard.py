"""``flin reshard`` on a live cluster, through the real CLI, supervisor,
router and workers: writers keep going while 4 shards become 7 and then 3,
and afterwards every acknowledged write is there, a key deleted or expired
during the move stays gone, counters count each acknowledged INCR once, and
SCAN sees every key once. A backup during a reshard is refused; STATUS shows
it. A driver or a supervisor killed in the middle rolls back, losing
nothing."""
from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time

import pytest

from typing import Any

import flin
from flin import errors
from flin.protocol import INCR
from flin.supervisor.processes import descendants
from tests.operations.test_operating import flin as run_flin

SERVER = 4                             # flin's exit code for a refusal by the server
from tests.support.cluster import Cluster, make_cluster

VALUE = b"v" * 1000
PRELOAD = 20_000                       # keys of ~1 KiB (20 MB): a reshard that takes a while


@pytest.fixture
def folder():
    with tempfile.TemporaryDirectory(prefix="flin-rs-", dir="/tmp") as d:
        yield d


def _preload(c: Cluster) -> None:
    with c.client() as cl:
        for i in range(0, PRELOAD, 2000):
            cl.mset([(b"pre:%06d" % j, VALUE + b"%d" % j) for j in range(i, i + 2000)])


def _check_preload(cl: flin.Client) -> None:
    keys = [b"pre:%06d" % j for j in range(PRELOAD)]
    got = cl.mget(keys)
    bad = [k for k, v in zip(keys, got) if v != VALUE + b"%d" % int(k[4:])]
    assert bad == [], bad[:5]


def reshard(c: Cluster, to: int, *extra: str, rc: int = 0):
    p = run_flin("reshard", "--data", c.data, "--shards", str(to), "--no-progress", *extra,
                 check_rc=rc, timeout=120)
    if rc == 0 and "--no-wait" not in extra:
        c.shards = to
    return p


class Scanner(threading.Thread):
    """Pages through the preloaded keys (present for the whole test) again
    and again, 500 a page: every pass must see each of them once."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.passes: list[int] = []
        self.bad: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        want = [b"pre:%06d" % j for j in range(PRELOAD)]
        with flin.Client(self.endpoint, timeout=10, retries=5) as cl:
            while not self.stop.is_set():
                got, cursor = [], None
                while True:
                    items, cursor = cl.scan(b"pre:", cursor, 500)
                    got += items
                    if cursor is None:
                        break
                if got != want:
                    self.bad.append("a pass saw %d keys, %d distinct" % (len(got), len(set(got))))
                self.passes.append(len(got))


class Writer(threading.Thread):
    """One client writing while the shards move: every SET goes to a new key
    (so that no later write can hide a lost one), every tenth op is an INCR
    of its counter, every tenth a DEL of a key set before the reshard. What
    was acknowledged, and what may or may not have been applied (an error
    that says nothing about the outcome)."""

    def __init__(self, endpoint: str, wid: int, doomed: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.wid = endpoint, wid
        self.doomed = list(doomed)          # set before the reshard, deleted during it
        self.acked: dict[bytes, bytes] = {}
        self.maybe: dict[bytes, bytes] = {}
        self.counter = b"count:%d" % wid
        self.incrs = self.incr_maybe = 0
        self.deleted: list[bytes] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with flin.Client(self.endpoint, timeout=10, retries=5) as cl:
            i = 0
            while not self.stop.is_set():
                k, v = b"w%d:%06d" % (self.wid, i), b"%d:%d" % (self.wid, i)
                try:
                    if i % 10 == 5:
                        self.incr_maybe += 1
                        cl.incr(self.counter)
                        self.incrs += 1
                        self.incr_maybe -= 1
                    elif i % 10 == 7 and self.doomed:
                        k = self.doomed.pop()
                        self.deleted.append(k)
                        cl.delete(k)
                    else:
                        self.maybe[k] = v
                        cl.set(k, v)
                        self.acked[k] = self.maybe.pop(k)
                except errors.FlinError as exc:
                    self.errors.append(repr(exc))
                i += 1

    def check(self, cl: flin.Client) -> None:
        keys = list(self.acked)
        lost = [k for k, got in zip(keys, cl.mget(keys)) if got != self.acked[k]]
        assert lost == [], (len(lost), lost[:5])                    # every acknowledged SET
        for k, v in self.maybe.items():
            assert cl.get(k) in (None, v), k
        n = int(cl.get(self.counter) or 0)
        assert self.incrs <= n <= self.incrs + self.incr_maybe, (n, self.incrs)
        back = [k for k, got in zip(self.deleted, cl.mget(self.deleted)) if got is not None]
        assert back == [], back[:5]                                 # no deleted key came back
        assert None not in cl.mget(self.doomed)                     # the others are still there


@pytest.mark.parametrize("pause", ["--pause", "--no-pause"])
def test_grow_then_shrink_under_writes_loses_nothing(folder, pause):
    """--no-pause: the sources' fence and the routers' re-routing of what it
    refuses are all that keep the writes of the switch."""
    c = make_cluster(folder, shards=4).start()
    try:
        _preload(c)
        with c.client() as cl:
            cl.mset([(b"ttl:%03d" % i, b"lasting") for i in range(100)], ttl=600)
            cl.mset([(b"brief:%03d" % i, b"brief") for i in range(100)], ttl=1)
        doomed = [[b"doomed:%d:%03d" % (w, i) for i in range(300)] for w in range(3)]
        with c.client() as cl:
            cl.mset([(k, b"doomed") for keys in doomed for k in keys])
            # INCRs whose keys will move; each resent with its request id afterwards
            uids = {b"uid:%03d" % i: os.urandom(12) for i in range(30)}
            done = {k: cl.execute([[INCR, k, 5, u]])[0] for k, u in uids.items()}
        writers: list[Any] = [Writer(c.endpoint, w, doomed[w]) for w in range(3)]
        scanner = Scanner(c.endpoint)
        writers.append(scanner)
        for w in writers:
            w.start()
        time.sleep(0.3)
        out = reshard(c, 7, "--rate", "15", pause).stdout
        assert "4 -> 7 shards" in out, out
        out = reshard(c, 3, pause).stdout
        assert "7 -> 3 shards" in out, out
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)
        writers.remove(scanner)
        assert scanner.bad == [] and len(scanner.passes) >= 2, (scanner.bad, scanner.passes)
        with c.client() as cl:
            assert {k: cl.execute([[INCR, k, 5, u]])[0] for k, u in uids.items()} == done
            assert cl.mget(list(uids)) == [b"5"] * len(uids)        # applied once each
            st = cl.status()
            assert st["epoch"] == 3 and len(st["shards"]) == 3
            assert all(s["alive"] for s in st["shards"])
            _check_preload(cl)
            for w in writers:
                w.check(cl)
            assert cl.mget([b"ttl:%03d" % i for i in range(100)]) == [b"lasting"] * 100
            assert 500 < cl.ttl(b"ttl:000") <= 600
            assert cl.mget([b"brief:%03d" % i for i in range(100)]) == [None] * 100
            scanned = list(cl.scan_iter(b"pre:"))
            assert len(scanned) == len(set(scanned)) == PRELOAD
        assert sum(len(w.acked) for w in writers) > 300      # the writers did write meanwhile
        assert sum(len(w.deleted) for w in writers) > 30
        assert sorted(n for n in os.listdir(c.data) if n.startswith("shard-")) == \
            ["shard-00", "shard-01", "shard-02"]
        with open(os.path.join(c.data, "flin.json")) as f:
            manifest = json.load(f)
        assert manifest["shards"] == 3 and manifest["epoch"] == 3 and "reshard" not in manifest
    finally:
        assert c.stop() == 0
    c.start()                                  # restarts on the folder's new count
    try:
        with c.client() as cl:
            _check_preload(cl)
            assert cl.status()["epoch"] == 3
    finally:
        assert c.stop() == 0


def _wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _progress(c: Cluster) -> dict:
    try:
        with open(os.path.join(c.data, "run", "reshard.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _start_slowly(c: Cluster, to: int) -> None:
    """Preload, and start a reshard at 2 MB/s: a second or more of copying."""
    _preload(c)
    reshard(c, to, "--rate", "2", "--no-wait")
    _wait_for(lambda: _progress(c).get("keys", 0) > 1000)


def _driver_pid(c: Cluster) -> int | None:
    for pid in descendants(c.proc.pid):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "flin-reshard":
                    return pid
        except OSError:
            pass
    return None


def test_a_backup_during_a_reshard_is_refused_and_status_shows_it(folder):
    c = make_cluster(folder, shards=3).start()
    try:
        _preload(c)
        reshard(c, 5, "--rate", "2", "--no-wait")
        _wait_for(lambda: _progress(c).get("state") == "copying" and _progress(c)["keys"] > 0)
        with c.client() as cl:              # INCRs with request ids while the keys move
            uids = {b"mid:%03d" % i: os.urandom(12) for i in range(40)}
            done = {k: cl.execute([[INCR, k, 3, u]])[0] for k, u in uids.items()}
        p = run_flin("backup", "-e", c.endpoint, os.path.join(folder, "bk"), check_rc=SERVER)
        assert "a reshard is in progress: back up after it" in p.stderr, p.stderr
        st = json.loads(run_flin("status", "-e", c.endpoint, "--json").stdout)
        assert st["reshard"]["to"] == 5 and st["reshard"]["state"] == "copying"
        assert "resharding 3 -> 5 shards: copying" in run_flin("status", "-e", c.endpoint).stdout
        assert "resharding 3 -> 5 shards: copying" in run_flin("stats", "-e", c.endpoint).stdout
        _wait_for(lambda: _progress(c).get("state") == "done", 60)
        with c.client() as cl:
            _check_preload(cl)
            assert len(cl.status()["shards"]) == 5
            # resent after the move: answered from the records that moved with them
            assert {k: cl.execute([[INCR, k, 3, u]])[0] for k, u in uids.items()} == done
            assert cl.mget(list(uids)) == [b"3"] * len(uids)
        c.shards = 5
        run_flin("backup", "-e", c.endpoint, os.path.join(folder, "bk2"))   # after: fine
        assert json.loads(run_flin("status", "-e", c.endpoint, "--json").stdout)["reshard"] is None
    finally:
        assert c.stop() == 0


def _router_pid(c: Cluster) -> int:
    with c.client() as cl:
        return cl.status()["router"]["pid"]


def _worker_pid(c: Cluster, shard: int) -> int:
    with c.client() as cl:
        return cl.status()["shards"][shard]["pid"]


@pytest.mark.parametrize("victim", ["driver", "a source worker", "a target worker"])
def test_a_kill_before_the_commit_rolls_back_and_nothing_is_lost(folder, victim):
    c = make_cluster(folder, shards=3).start()
    try:
        _start_slowly(c, 6)
        os.kill(_driver_pid(c) if victim == "driver"
                else _worker_pid(c, 0 if victim == "a source worker" else 4), signal.SIGKILL)
        _wait_for(lambda: _progress(c).get("state") == "failed")
        with c.client() as cl:
            _check_preload(cl)
            st = cl.status()
            assert st["epoch"] == 1 and len(st["shards"]) == 3
        assert sorted(n for n in os.listdir(c.data) if n.startswith("shard-")) == \
            ["shard-00", "shard-01", "shard-02"]
        assert "reshard" not in json.load(open(os.path.join(c.data, "flin.json")))
        assert "3 -> 6" in reshard(c, 6).stdout          # and a reshard works afterwards
        with c.client() as cl:
            _check_preload(cl)
            assert len(cl.status()["shards"]) == 6
    finally:
        assert c.stop() == 0


def test_a_router_killed_mid_copy_is_restarted_and_the_reshard_ends_one_way(folder):
    """Between the driver's requests a restarted router is just a router (it
    starts linked to both rings); with one in flight, the driver's call fails
    and the reshard rolls back. Either way: nothing lost, and the cluster
    says what it is."""
    c = make_cluster(folder, shards=3).start()
    try:
        _start_slowly(c, 6)
        os.kill(_router_pid(c), signal.SIGKILL)
        _wait_for(lambda: _progress(c).get("state") in ("done", "failed"), 90)
        with open(os.path.join(c.data, "flin.json")) as f:
            manifest = json.load(f)
        assert "reshard" not in manifest
        with c.client() as cl:
            _check_preload(cl)
            st = cl.status()
            assert len(st["shards"]) == manifest["shards"] and all(s["alive"] for s in st["shards"])
            assert st["epoch"] == manifest.get("epoch", 1)
            assert len(list(cl.scan_iter(b"pre:"))) == PRELOAD
        c.shards = manifest["shards"]
    finally:
        assert c.stop() == 0


def test_a_killed_supervisor_mid_reshard_rolls_back_at_the_next_start(folder):
    c = make_cluster(folder, shards=3).start()
    try:
        _start_slowly(c, 2)
        c.kill()
        c.start()
        assert "was interrupted" in c.log()
        with c.client() as cl:
            _check_preload(cl)
            assert len(cl.status()["shards"]) == 3
        # the shards that took keys in clean them up: nothing of theirs is stray
        _wait_for(lambda: not any(os.path.exists(os.path.join(c.data, "shard-%02d" % s,
                                                              "CLEANUP")) for s in range(3)))
        with c.client() as cl:
            assert len(list(cl.scan_iter(b"pre:"))) == PRELOAD
    finally:
        assert c.stop() == 0


def _committed(c: Cluster) -> bool:
    with open(os.path.join(c.data, "flin.json")) as f:
        return json.load(f).get("epoch") == 2


@pytest.mark.parametrize("victim", ["driver", "supervisor", "a target worker"])
def test_a_crash_after_the_commit_finishes_the_switch(folder, monkeypatch, victim):
    """Killed between the commit and the switch (held there by a failpoint):
    the switch is finished, by a new driver or at the next start."""
    monkeypatch.setenv("FLIN_TEST_RESHARD_STALL", "after_commit:30")
    c = make_cluster(folder, shards=3).start()
    try:
        _preload(c)
        reshard(c, 5, "--no-wait")
        _wait_for(lambda: _committed(c))
        monkeypatch.delenv("FLIN_TEST_RESHARD_STALL")
        c.shards = 5
        if victim == "driver":
            os.kill(_driver_pid(c), signal.SIGKILL)
            _wait_for(lambda: _progress(c).get("state") == "done")
        elif victim == "a target worker":     # restarted on the new ring, it keeps its keys
            os.kill(_worker_pid(c, 4), signal.SIGKILL)
            _wait_for(lambda: _progress(c).get("state") == "done", 60)
        else:
            c.kill()
            c.start()
            assert "it was committed; finishing it" in c.log()
        with c.client() as cl:
            _check_preload(cl)
            st = cl.status()
            assert st["epoch"] == 2 and len(st["shards"]) == 5 and st["reshard"] is None
            assert len(list(cl.scan_iter(b"pre:"))) == PRELOAD
        _wait_for(lambda: not any(os.path.exists(os.path.join(c.data, "shard-%02d" % s,
                                                              "CLEANUP")) for s in range(5)))
        with open(os.path.join(c.data, "flin.json")) as f:
            assert "reshard" not in json.load(f)
    finally:
        assert c.stop() == 0


def test_a_reshard_is_refused_with_why(folder):
    c = make_cluster(folder, shards=2).start()
    try:
        p = reshard(c, 2, rc=1)
        assert "not 2 (the count now)" in p.stderr, p.stderr
    finally:
        assert c.stop() == 0
    p = reshard(c, 4, rc=3)
    assert "no Flin cluster runs on" in p.stderr, p.stderr
