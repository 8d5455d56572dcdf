"""Losing a router of a pool loses nothing: SIGKILL one under a write storm;
new calls go to the others at once, no call outlives its timeout, every
acknowledged write is there, and the restarted router is used again."""
import os
import signal
import tempfile
import threading
import time

import pytest

import flin
from flin import errors
from tests.support import faults as faultlib
from tests.support.cluster import make_cluster

TIMEOUT = 3.0


@pytest.fixture
def pool():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=4, extra=["--routers", "3"]).start()
        yield c
        assert c.stop() == 0


def test_sigkill_of_a_router_under_a_write_storm(pool):
    stop = threading.Event()
    killed_at = [0.0]
    lock = threading.Lock()
    acked: dict[bytes, bytes] = {}
    errs: dict[str, int] = {}
    slowest = [0.0]
    after_kill_ok = [0]
    after_kill_fast = [0]

    def writer(t: int) -> None:
        with flin.Client(pool.endpoint, timeout=TIMEOUT, retries=3) as c:
            i = 0
            while not stop.is_set():
                i += 1
                key, value = b"storm:%d:%d" % (t, i), b"v%d" % i
                t0 = time.monotonic()
                try:
                    if i % 3:
                        c.set(key, value)
                    else:
                        c.set(key, value, nx=True)     # not retry-safe: may raise
                except errors.FlinError as exc:
                    kind = type(exc).__name__ + ("" if i % 3 == 0 else " (retry-safe SET)")
                    with lock:
                        errs[kind] = errs.get(kind, 0) + 1
                else:
                    with lock:
                        acked[key] = value
                        if killed_at[0] and t0 > killed_at[0]:
                            after_kill_ok[0] += 1
                            if t0 < killed_at[0] + 1.0:
                                after_kill_fast[0] += 1
                took = time.monotonic() - t0
                with lock:
                    slowest[0] = max(slowest[0], took)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    time.sleep(1.5)
    victim = faultlib.router_pids(pool)[1]
    os.kill(victim, signal.SIGSTOP)              # calls sent to it now wait there...
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)              # ... and are lost with it
    killed_at[0] = time.monotonic()
    time.sleep(3.0)
    stop.set()
    for th in threads:
        th.join(TIMEOUT + 10)
    assert not any(th.is_alive() for th in threads), "a call hung"
    assert slowest[0] <= TIMEOUT + 1.0, "a call took %.2fs (timeout %.1fs)" % (slowest[0], TIMEOUT)
    assert after_kill_fast[0] >= 50, (after_kill_fast[0], errs)   # the others serve at once
    # a plain SET in flight at the dead router is resent to the others at once;
    # a SET NX there cannot be, and times out
    assert set(errs) <= {"Timeout", "OutcomeUnknown"}, errs
    assert sum(errs.values()) <= 6 * 3, errs                      # a few calls in flight there

    # the supervisor restarts it; every acknowledged write is there
    new = faultlib.wait_for(lambda: faultlib.router_pids(pool).get(1) not in (None, victim),
                            20, "router 1 restarted")
    assert new
    with flin.Client(pool.endpoint, timeout=10) as c:
        faultlib.assert_all_there(c, acked)
        st = c.status()
        assert all(r["alive"] for r in st["routers"]), st["routers"]
        assert st["routers"][1]["pid"] != victim
    assert len(acked) > 300


def test_clients_use_a_restarted_router_again(pool):
    with flin.Client(pool.endpoint, timeout=5) as c:
        c.set(b"again", b"1")
        victim = faultlib.router_pids(pool)[2]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        for i in range(200):                         # served by the other two meanwhile
            c.set(b"again:%d" % i, b"x")
        assert time.monotonic() - t0 < 5
        faultlib.wait_for(lambda: faultlib.router_pids(pool).get(2) not in (None, victim),
                          20, "router 2 restarted")
        faultlib.wait_for(lambda: flin.Client(pool.endpoint + ".2", discover=False).ping(),
                          20, "router 2 answers")

        def grows():
            with flin.Client(pool.endpoint + ".2", timeout=5, discover=False) as d:
                before = d.stats()["router"]["requests"]
                for i in range(300):
                    c.get(b"again:%d" % (i % 200))
                return d.stats()["router"]["requests"] - before - 1 > 30
        faultlib.wait_for(grows, 20, "the client to use router 2 again", every=0.2)


def test_a_router_that_cannot_bind_stops_the_start(tmp_path):
    """Router 1's port or path is taken: the start fails, naming it."""
    import socket
    import subprocess
    import sys
    from tests.support.cluster import ROOT
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        taken.bind(os.path.join(d, "c.sock.1"))
        taken.listen(1)
        try:
            out = subprocess.run([sys.executable, "-m", "flin", "start", "--data",
                                  os.path.join(d, "data"), "--shards", "2", "--routers", "2",
                                  "--bind", "ipc://" + os.path.join(d, "c.sock")],
                                 capture_output=True, cwd=ROOT, timeout=60)
        finally:
            taken.close()
        assert out.returncode == 2, out
        assert b"c.sock.1" in out.stderr, out.stderr


def test_asyncio_calls_in_flight_at_a_dead_router_are_resent(pool):
    """The asyncio client under a SET storm over three routers; router 1 is
    stopped (calls pile up there), then SIGKILLed: every plain SET (safe to
    resend) succeeds, none takes past the timeout, and all of them are there."""
    import asyncio
    import flin.asyncio

    async def main():
        db = flin.asyncio.Client(pool.endpoint, timeout=TIMEOUT)
        await db.ping()
        stop = asyncio.Event()
        acked, slow, errs = {}, [0.0], []

        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                key = b"aio:%d:%d" % (w, i)
                t0 = time.monotonic()
                try:
                    await db.set(key, b"%d" % i)
                except errors.FlinError as exc:
                    errs.append(repr(exc))
                else:
                    acked[key] = b"%d" % i
                slow[0] = max(slow[0], time.monotonic() - t0)

        tasks = [asyncio.create_task(writer(w)) for w in range(50)]
        await asyncio.sleep(1.0)
        victim = faultlib.router_pids(pool)[1]
        os.kill(victim, signal.SIGSTOP)          # frames sent to it now wait there...
        await asyncio.sleep(0.5)
        os.kill(victim, signal.SIGKILL)          # ... and are lost with it
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks)
        assert not errs, errs[:5]
        assert slow[0] < TIMEOUT, slow[0]
        await faultlib.assert_all_there_async(db, acked)
        await db.close()
        return len(acked)
    assert asyncio.run(main()) > 300


def test_a_stopped_router_is_left_and_its_calls_go_elsewhere(pool):
    """SIGSTOP one router of three for 8 s, longer than the clients' 6 s
    timeout, under a write storm: the clients' heartbeats find it silent and
    disconnect it; every plain SET succeeds within its timeout (those sent to
    it are resent to the others), and once it runs again it is used again."""
    stop = threading.Event()
    errs, acked, slow = [], {}, [0.0]
    lock = threading.Lock()

    def writer(t: int) -> None:
        with flin.Client(pool.endpoint, timeout=6.0) as c:
            i = 0
            while not stop.is_set():
                i += 1
                key = b"sstop:%d:%d" % (t, i)
                t0 = time.monotonic()
                try:
                    c.set(key, b"v")
                except errors.FlinError as exc:
                    with lock:
                        errs.append(repr(exc))
                else:
                    with lock:
                        acked[key] = b"v"
                with lock:
                    slow[0] = max(slow[0], time.monotonic() - t0)
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    time.sleep(1.0)
    victim = faultlib.router_pids(pool)[1]
    os.kill(victim, signal.SIGSTOP)
    time.sleep(8.0)
    during = len(acked)
    os.kill(victim, signal.SIGCONT)
    time.sleep(1.0)
    stop.set()
    for th in threads:
        th.join(20)
    assert not errs, errs[:3]
    assert slow[0] < 6.0
    assert during > 200, during                     # the others served meanwhile
    with flin.Client(pool.endpoint, timeout=10) as c:
        faultlib.assert_all_there(c, acked)
        st = c.status()
        assert all(r["alive"] for r in st["routers"]) and st["routers"][1]["pid"] == victim
