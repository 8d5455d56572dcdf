"""Catalogue 22 and 23: the data folder has one owner, and its shards are
never silently re-created.

- a shard folder missing at start is refused, naming the shard; one deleted
  while the cluster runs stops acknowledging writes at once;
- a second start, `flin repair` or a restart right after SIGKILL of the
  supervisor never takes or rewrites anything of a live cluster, and the
  restart waits for the old processes instead of failing or hanging;
- a worker link removed from under a running router is noticed and the
  router restarted, so that restarted workers can reach it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from flin import errors
from flin.supervisor.processes import alive, descendants
from tests.support import faults as faultlib
from tests.support.cluster import ROOT, make_cluster

USAGE = 2


def _flin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flin", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _start_fails(c, timeout: float = 30) -> subprocess.CompletedProcess:
    """`flin start` on ``c``'s folder, expected to exit without becoming ready."""
    return _flin("start", "--data", c.data, "--shards", str(c.shards), "--bind",
                 c.endpoint, timeout=timeout)


def test_shard_folder_missing_at_start_is_refused_naming_it(tmp_short):
    """22: an existing folder that lost a shard does not start with an empty
    shard in its place; the error names the shard; nothing is re-created."""
    c = make_cluster(tmp_short, 4).start()
    keys = faultlib.keys_on(2, 4, 20)
    with c.client() as cl:
        for k in keys:
            cl.set(k, b"v")
    assert c.stop() == 0
    gone = os.path.join(c.data, "shard-02")
    shutil.rmtree(gone)
    out = _start_fails(c)
    assert out.returncode == USAGE, out
    assert "shard 2 (%s)" % gone in out.stderr and "ready" not in out.stdout, out.stderr
    assert not os.path.exists(gone)               # not re-created empty
    # an emptied folder (its LevelDB files gone) is refused the same way, and
    # `flin repair` does not turn it into a new empty shard either
    os.mkdir(gone)
    out = _start_fails(c)
    assert out.returncode == USAGE and "shard 2 " in out.stderr, out
    rep = _flin("repair", "--data", c.data)
    assert rep.returncode != 0 and "shard 2 " in rep.stderr, rep
    assert "Traceback" not in rep.stderr and os.listdir(gone) == []
    out = _start_fails(c)
    assert out.returncode == USAGE and "shard 2 " in out.stderr, out


def test_a_first_start_interrupted_while_creating_shards_is_finished(tmp_short):
    """22: a new folder's manifest says "creating" until every shard exists;
    a start killed meanwhile leaves a folder the next start completes (not
    one it refuses for having shard folders, or one with shards missing)."""
    import json
    c = make_cluster(tmp_short, 8).start()
    assert c.stop() == 0
    manifest = os.path.join(c.data, "flin.json")
    m = json.load(open(manifest))
    assert "creating" not in m
    m["creating"] = True                     # as a start killed after shard 2 left it
    json.dump(m, open(manifest, "w"))
    for s in range(3, 8):
        shutil.rmtree(os.path.join(c.data, "shard-%02d" % s))
    c.start()
    try:
        with c.client() as cl:
            assert all(s["alive"] for s in cl.status()["shards"])
            cl.set(b"after", b"1")
    finally:
        assert c.stop() == 0
    assert "creating" not in json.load(open(manifest))


def test_shard_folder_deleted_while_running_stops_acknowledging(tmp_short):
    """22: once a running shard's folder is deleted, no write to it is
    acknowledged (LevelDB would append to a log no folder holds any more);
    the shard goes DOWN naming the folder, the other shards serve, and a
    restart refuses to start it empty."""
    c = make_cluster(tmp_short, 4).start()
    try:
        mine = faultlib.keys_on(1, 4, 40)
        other = faultlib.keys_on(3, 4, 1)[0]
        with c.client() as cl:
            cl.set(mine[0], b"before")
        shutil.rmtree(os.path.join(c.data, "shard-01"))
        acked = 0
        with c.client(timeout=1.0, retries=0) as cl:
            for k in mine[1:]:
                try:
                    cl.set(k, b"after")
                    acked += 1
                except errors.FlinError:
                    pass
            assert acked == 0, "%d writes acknowledged into a deleted shard folder" % acked

            def down():
                st = cl.status()["shards"][1]
                return not st["alive"] and "shard-01" in (st.get("error") or "")
            faultlib.wait_for(down, 10, "shard 1 to be reported down")
            cl.set(other, b"o")                       # the other shards serve
            assert cl.get(other) == b"o"
    finally:
        assert c.stop() == 0
    out = _start_fails(c)
    assert out.returncode == USAGE and "shard 1 " in out.stderr, out


def _drop_pid_file(c) -> None:
    """The old guard was DATA/run/flin.pid: without it nothing stopped a
    second owner. The lock does not depend on any such file."""
    try:
        os.unlink(os.path.join(c.data, "run", "flin.pid"))
    except FileNotFoundError:
        pass


def test_second_start_and_repair_on_a_live_folder_take_nothing(tmp_short):
    """23: a second `flin start` (another endpoint) and `flin repair` on a
    live folder are refused; the live cluster keeps its link, its state file
    and its stoppability, a killed worker of it comes back, and its shard
    files are not rewritten."""
    c = make_cluster(tmp_short, 4).start()
    try:
        with c.client() as cl:
            cl.set(b"own:1", b"1")
        _drop_pid_file(c)
        shard0 = os.path.join(c.data, "shard-00")
        before = {n: os.stat(os.path.join(shard0, n)).st_mtime_ns for n in os.listdir(shard0)}
        second = _flin("start", "--data", c.data, "--shards", "4", "--bind", c.endpoint + "2")
        assert second.returncode == USAGE and "already serves" in second.stderr, second
        rep = _flin("repair", "--data", c.data)
        assert rep.returncode != 0 and "already serves" in rep.stderr, rep
        after = {n: os.stat(os.path.join(shard0, n)).st_mtime_ns for n in os.listdir(shard0)}
        assert after == before
        assert os.path.exists(os.path.join(c.data, "run", "shards.link"))
        assert os.path.exists(os.path.join(c.data, "run", "children.json"))
        pid = faultlib.wait_worker(c, 2)
        os.kill(pid, signal.SIGKILL)
        faultlib.wait_worker(c, 2, not_pid=pid, timeout=15)
        with c.client() as cl:
            faultlib.wait_for(lambda: all(s["alive"] for s in cl.status()["shards"]), 15,
                              "every shard alive again")
            assert cl.get(b"own:1") == b"1"
        pids = descendants(c.proc.pid) | {c.proc.pid}
        stop = _flin("stop", "--data", c.data)
        assert stop.returncode == 0 and "stopped" in stop.stdout, stop
        assert not [p for p in pids if alive(p)]    # stop waits for every process
        assert c.proc.wait(10) == 0
        c.proc.stdout.close()
        c.proc = None
    finally:
        if c.proc is not None:
            c.stop()


def test_restart_right_after_supervisor_sigkill_becomes_ready(tmp_short):
    """23: SIGKILL the supervisor alone (its children exit on their own, a
    little later) and start again at once: the start waits for the old
    processes and their LevelDB locks, becomes ready and serves every write
    acknowledged before. In the last round one old worker is held stopped
    past the new start, so it still holds its LevelDB when the start begins."""
    import threading
    c = make_cluster(tmp_short, 4)
    c.start()
    try:
        for i in range(4):
            with c.client() as cl:
                cl.set(b"round:%d" % i, b"%d" % i)
            old = descendants(c.proc.pid)
            held = faultlib.wait_worker(c, 3) if i == 3 else None
            if held is not None:
                os.kill(held, signal.SIGSTOP)   # its SIGTERM waits until SIGCONT
            os.kill(c.proc.pid, signal.SIGKILL)
            c.proc.wait(10)
            c.proc.stdout.close()
            c.proc = None
            if held is not None:
                threading.Timer(1.5, os.kill, (held, signal.SIGCONT)).start()
            c.start(timeout=40)        # raises if it exits or never says ready
            with c.client() as cl:
                for j in range(i + 1):
                    assert cl.get(b"round:%d" % j) == b"%d" % j
                assert all(s["alive"] for s in cl.status()["shards"])
            assert not [p for p in old if alive(p)]
        assert "waiting for the processes of an earlier cluster" in c.log()
    finally:
        if c.proc is not None:
            assert c.stop() == 0


def test_worker_link_deleted_is_noticed_and_the_router_restarted(tmp_short):
    """23: without DATA/run/shards.link a restarting worker cannot reach the
    router. The supervisor notices the link is gone, restarts the router,
    and a killed worker then comes back and serves."""
    c = make_cluster(tmp_short, 4).start()
    try:
        key = faultlib.keys_on(2, 4, 1)[0]
        with c.client() as cl:
            cl.set(key, b"v")
        os.unlink(os.path.join(c.data, "run", "shards.link"))
        pid = faultlib.wait_worker(c, 2)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with c.client(timeout=2.0) as cl:
            def serves():
                try:
                    return all(s["alive"] for s in cl.status()["shards"]) and cl.get(key) == b"v"
                except errors.FlinError:
                    return False
            faultlib.wait_for(serves, 20, "the cluster to serve again", every=0.2)
        assert time.monotonic() - t0 < 20
        assert "worker link" in c.log() and "is gone" in c.log()
    finally:
        assert c.stop() == 0
