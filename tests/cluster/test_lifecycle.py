"""A cluster's life: data survives stop + start, the shard count of a data
folder is fixed, SIGTERM leaves nothing behind, 64 shards start."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.support.cluster import ROOT, alive, descendants, make_cluster


def _flin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIN_")}
    return subprocess.run([sys.executable, "-m", "flin", *args], capture_output=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _wait_gone(pids: set, within: float = 5.0) -> list:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_data_survives_flin_stop_and_start(tmp_short):
    c = make_cluster(tmp_short).start()
    data = {b"life:%04d" % i: os.urandom(i % 300) for i in range(2000)}
    try:
        with c.client() as db:
            db.mset(data)
            db.set(b"life:ttl", b"t", ttl=500)
            db.incr(b"life:ctr", 7)
            db.delete(b"life:0000")
        del data[b"life:0000"]
        pids = c.child_pids() | {c.proc.pid}
        p = _flin("stop", "--data", c.data)
        assert p.returncode == 0, p.stderr
        assert c.proc.wait(30) == 0
        c.proc.stdout.close()
        c.proc = None
        assert _wait_gone(pids) == []
        c.start()
        with c.client() as db:
            assert db.mget(list(data)) == list(data.values())
            assert db.get(b"life:0000") is None
            assert db.get(b"life:ctr") == b"7"
            assert 0 < db.ttl(b"life:ttl") <= 500
            assert list(db.scan_iter(b"life:0")) == sorted(k for k in data if k.startswith(b"life:0"))
        # and a second round: stop via SIGTERM, start again
        assert c.stop() == 0
        c.start()
        with c.client() as db:
            assert db.mget(list(data)[:100]) == list(data.values())[:100]
    finally:
        if c.proc is not None:
            assert c.stop() == 0


def test_restart_with_another_shard_count_is_refused(tmp_short):
    c = make_cluster(tmp_short, shards=4).start()
    with c.client() as db:
        db.set(b"k", b"v")
    assert c.stop() == 0
    for other in ("3", "8"):
        p = _flin("start", "--data", c.data, "--shards", other, "--bind", c.endpoint)
        assert p.returncode == 2, (p.returncode, p.stderr)
        msg = p.stderr.decode()
        assert "4 shards" in msg and "--shards 4" in msg, msg
        assert b"ready" not in p.stdout
    # the refusal left the folder intact: the right count still starts, with the data
    c.start()
    try:
        with c.client() as db:
            assert db.get(b"k") == b"v"
    finally:
        assert c.stop() == 0


def test_sigterm_stops_every_child_and_exits_0(tmp_short):
    c = make_cluster(tmp_short, shards=6).start()
    children = c.child_pids()
    assert len(children) >= 7  # router + 6 workers
    with c.client() as db:
        st = db.status()
        assert {s["pid"] for s in st["shards"]} | {st["router"]["pid"]} <= children
        db.set(b"k", b"v")
    sup = c.proc
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    sup.stdout.close()
    c.proc = None
    assert _wait_gone(children | {sup.pid}) == []
    assert descendants(sup.pid) == set()
    # the owner lock is free and names no pid, so a new start on the folder is allowed
    assert open(os.path.join(c.data, "flin.lock")).read() == ""


def test_sigint_stops_every_child_and_exits_0(tmp_short):
    c = make_cluster(tmp_short, shards=3).start()
    children = c.child_pids()
    c.proc.send_signal(signal.SIGINT)
    assert c.proc.wait(30) == 0
    c.proc.stdout.close()
    c.proc = None
    assert _wait_gone(children) == []


def test_second_start_on_a_running_folder_is_refused(cluster):
    p = _flin("start", "--data", cluster.data, "--shards", str(cluster.shards),
              "--bind", cluster.endpoint + "2")
    assert p.returncode == 2, p.stderr
    assert b"already" in p.stderr
    with cluster.client() as db:
        assert db.ping()


def test_64_shard_cluster_starts(tmp_short, record_property):
    c = make_cluster(tmp_short, shards=64)
    c.start(timeout=120)
    try:
        record_property("startup_s_64_shards", round(c.startup_s, 3))
        print("64-shard cluster started in %.2fs" % c.startup_s)
        with c.client() as db:
            st = db.status()
            assert len(st["shards"]) == 64 and all(s["alive"] for s in st["shards"])
            keys = [b"k%d" % i for i in range(1000)]
            db.mset({k: k for k in keys})
            assert db.mget(keys) == keys
            assert list(db.scan_iter(b"k", page=100)) == sorted(keys)
        assert len(c.child_pids()) >= 65
    finally:
        assert c.stop() == 0


def test_start_refuses_when_the_endpoint_is_taken(tmp_short):
    """The router cannot bind: `flin start` exits with a clear message, not a
    restart loop, and leaves no process behind."""
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flin", "start", "--data", os.path.join(tmp_short, "d"),
             "--shards", "2", "--bind", "tcp://127.0.0.1:%d" % port],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("flin start kept retrying a bind that cannot succeed")
        assert proc.returncode == 2, (out, err[-2000:])
        assert b"cannot bind tcp://127.0.0.1:%d" % port in err, err[-2000:]
        assert descendants(proc.pid) == set()
    finally:
        taken.close()


def test_a_live_ipc_endpoint_is_not_taken_over(tmp_short):
    """26: a second cluster (another data folder) on the ipc path a live
    cluster serves is refused with a clear message, and new clients of that
    path still reach the first cluster; a stale socket file nobody serves is
    no obstacle."""
    import socket
    a = make_cluster(tmp_short, shards=2).start()
    try:
        with a.client() as cl:
            cl.set(b"whose", b"a")
        out = subprocess.run(
            [sys.executable, "-m", "flin", "start", "--data", os.path.join(tmp_short, "b"),
             "--shards", "2", "--bind", a.endpoint],
            cwd=ROOT, capture_output=True, timeout=60)
        assert out.returncode == 2, out
        assert b"is served by another live process" in out.stderr, out.stderr[-2000:]
        assert b"Traceback" not in out.stderr
        with a.client() as cl:                  # a new client still reaches the first
            assert cl.get(b"whose") == b"a"
    finally:
        assert a.stop() == 0
    stale = os.path.join(tmp_short, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()                                   # the file stays; nobody accepts on it
    b = make_cluster(tmp_short, shards=2)
    b.endpoint = "ipc://" + stale
    b.start()
    with b.client() as cl:
        assert cl.get(b"whose") == b"a"          # the same folder, now on the stale path
    assert b.stop() == 0


def test_two_clusters_starting_at_once_on_one_ipc_path_let_one_through(tmp_short):
    """26: the probe before binding is check-then-act; the claim on PATH.lock
    that a router holds while it serves makes two clusters (two folders)
    started at the same moment on one ipc path end with exactly one serving."""
    from flin.router.sockets import claim_ipc
    ep = "ipc://" + os.path.join(tmp_short, "one.sock")
    held = claim_ipc(ep)                       # as a router that is about to bind
    try:
        out = subprocess.run(
            [sys.executable, "-m", "flin", "start", "--data", os.path.join(tmp_short, "h"),
             "--shards", "1", "--bind", ep], cwd=ROOT, capture_output=True, timeout=60)
        assert out.returncode == 2 and b"claimed by another live Flin router" in out.stderr, out
    finally:
        os.close(held)
    for round_ in range(3):
        procs = [subprocess.Popen(
            [sys.executable, "-m", "flin", "start", "--data",
             os.path.join(tmp_short, "r%d-%d" % (round_, i)), "--shards", "2", "--bind", ep],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
        first = [p.stdout.readline() for p in procs]
        ready = [i for i, line in enumerate(first) if b"ready" in line]
        try:
            assert len(ready) == 1, (first, [p.poll() for p in procs])
            loser = procs[1 - ready[0]]
            assert loser.wait(30) == 2
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    assert p.wait(30) == 0
                p.stdout.close()
                p.stderr.close()
