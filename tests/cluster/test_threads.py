"""One ``flin.Client`` shared by many threads (real cluster): every answer
right, sockets of exited threads freed, a timeout in one thread harmless to
the others."""
from __future__ import annotations

import os
import random
import signal
import threading
import time

from flin import errors
from tests.support import faults as faultlib
from tests.support.cluster import make_cluster

THREADS = 16
CALLS = 10_000            # per thread
OWN_KEYS = 16             # per thread
SHARED = [b"thr:shared:%d" % i for i in range(4)]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _run_threads(target, n: int = THREADS, timeout: float = 120.0) -> None:
    ts = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"


def _worker(db, tid: int, calls: int, bad: list, incrs: list) -> None:
    """``calls`` mixed calls; every answer checked against what this thread knows."""
    rnd = random.Random(tid)
    own = [b"thr:%d:%d" % (tid, j) for j in range(OWN_KEYS)]
    ctr = b"thr:%d:ctr" % tid
    model: dict[bytes, bytes] = {}
    mine = 0                        # this thread's own counter
    seen = [0] * len(SHARED)        # the highest value of each shared counter seen
    done = [0] * len(SHARED)        # this thread's INCRs of each
    try:
        for n in range(calls):
            op = rnd.random()
            k = rnd.choice(own)
            if op < 0.25:
                v = b"%d:%d" % (tid, n)
                got = db.set(k, v)
                model[k] = v
                want = None
            elif op < 0.45:
                got, want = db.get(k), model.get(k)
            elif op < 0.55:
                mine += 1
                got, want = db.incr(ctr), mine
            elif op < 0.70:
                i = rnd.randrange(len(SHARED))
                got = db.incr(SHARED[i])
                done[i] += 1
                want = got if got > seen[i] else ("> %d" % seen[i])
                seen[i] = max(seen[i], got)
            elif op < 0.78:
                got, want = db.delete(k), int(k in model)
                model.pop(k, None)
            elif op < 0.90:
                ks = rnd.sample(own, 3) + [ctr]
                got = db.mget(ks)
                want = [model.get(x) for x in ks[:3]] + [b"%d" % mine if mine else None]
            else:
                got, want = db.exists(k), k in model
            if got != want:
                bad.append((tid, n, op, k, got, want))
                if len(bad) > 20:
                    return
    except Exception as exc:        # noqa: BLE001 - every failure is a finding
        bad.append((tid, "raised", repr(exc)))
    incrs.append(done)


def test_threads_share_one_client(shared_cluster):
    """16 threads, 10,000 mixed calls each, one Client: per-thread keys exact,
    shared counters monotonic per thread and exact in total."""
    bad: list = []
    incrs: list = []
    with shared_cluster.client(timeout=10.0) as db:
        db.delete(*SHARED)
        t0 = time.monotonic()
        _run_threads(lambda tid: _worker(db, tid, CALLS, bad, incrs))
        took = time.monotonic() - t0
        assert not bad, bad[:10]
        assert len(incrs) == THREADS
        totals = [sum(d[i] for d in incrs) for i in range(len(SHARED))]
        assert [int(v or 0) for v in db.mget(SHARED)] == totals
    print("\n[threads] %d threads x %d calls on one Client: %.1fs, %.0f calls/s"
          % (THREADS, CALLS, took, THREADS * CALLS / took))


def _settled(want: int, timeout: float = 5.0) -> int:
    """The fd count once it is at most ``want`` (libzmq's reaper closes
    connections shortly after a socket closes), else what it is then."""
    deadline = time.monotonic() + timeout
    while _fds() > want and time.monotonic() < deadline:
        time.sleep(0.02)
    return _fds()


def test_exited_threads_sockets_freed(shared_cluster):
    """Threads that call, then exit: close() frees their sockets (the fd count
    returns to where it was), and without close() a new thread's first call
    frees the dead threads' sockets, so rounds of threads do not accumulate."""
    with shared_cluster.client() as db:
        db.ping()
        _run_threads(lambda tid: db.ping())
        db.close()
        base = _settled(0, 0.5)
        for _ in range(5):
            _run_threads(lambda tid: db.ping())
            assert _fds() > base                        # the threads' sockets are open
            db.close()
            assert _settled(base) <= base
        db.ping()
        one = _settled(0, 0.5) - base                   # what one socket holds open
        assert one > 0
        bound = base + one * (THREADS + 1)              # one round's threads, and ours
        for _ in range(8):                              # no close() between rounds
            _run_threads(lambda tid: db.ping())
            assert _settled(bound) <= bound, (_fds(), bound)
        db.close()
        assert _settled(base) <= base


def test_timeout_in_one_thread_spares_the_others(tmp_short):
    """A call to a SIGSTOPped shard times out in its thread; the other thread's
    calls, on another shard over the same Client, all succeed meanwhile."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "30"]).start()
    stuck = faultlib.keys_on(0, 4, 1, "thr")[0]
    fine = faultlib.keys_on(3, 4, 8, "thr")
    pid = faultlib.wait_worker(c, 0)
    stop = threading.Event()
    timeouts: list = []
    bad: list = []
    served = [0]
    try:
        with c.client(timeout=0.5, retries=0) as db:
            db.set(stuck, b"s")

            def victim(_: int) -> None:
                for _ in range(4):
                    t0 = time.monotonic()
                    try:
                        db.get(stuck)
                        bad.append("a call to the stopped shard returned")
                    except errors.Timeout:
                        timeouts.append(time.monotonic() - t0)
                    except Exception as exc:    # noqa: BLE001
                        bad.append(repr(exc))
                stop.set()

            def bystander(_: int) -> None:
                n = 0
                try:
                    while not stop.is_set():
                        k = fine[n % len(fine)]
                        db.set(k, b"%d" % n)
                        got = db.get(k)
                        if got != b"%d" % n:
                            bad.append((k, got, n))
                        n += 1
                except Exception as exc:        # noqa: BLE001
                    bad.append(repr(exc))
                served[0] = n

            os.kill(pid, signal.SIGSTOP)
            ts = [threading.Thread(target=f, args=(0,), daemon=True) for f in (victim, bystander)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
                assert not t.is_alive(), "a thread hung"
            os.kill(pid, signal.SIGCONT)
            assert not bad, bad[:10]
            assert len(timeouts) == 4 and max(timeouts) < 2.0, timeouts
            assert served[0] > 10, served
            assert faultlib.wait_for(lambda: _get_or_none(db, stuck) == b"s", 10,
                                     "the stopped shard to serve again")
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0


def _get_or_none(db, key: bytes):
    try:
        return db.get(key)
    except errors.FlinError:
        return None
