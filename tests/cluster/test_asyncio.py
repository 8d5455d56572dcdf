"""``flin.asyncio.Client`` against a real cluster: the sync client's answers
and errors, many coroutines on one socket (coalesced), cancellation, a
stopped shard. Plain pytest: each test runs its coroutine with ``asyncio.run``."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import flin.asyncio
from flin import errors
from tests.support import faults as faultlib
from tests.support.cluster import make_cluster


def _aclient(cluster, **kw) -> flin.asyncio.Client:
    kw.setdefault("timeout", 10.0)
    return flin.asyncio.Client(cluster.endpoint, **kw)


def _script(db, p: str):
    """The same calls for either client: a list of (name, call) pairs whose
    results are compared; ``db`` methods return values or awaitables."""
    return [
        ("set", lambda: db.set(p + "a", b"1")),
        ("get", lambda: db.get(p + "a")),
        ("get missing", lambda: db.get(p + "missing")),
        ("set nx", lambda: db.set(p + "a", b"2", nx=True)),
        ("set xx", lambda: db.set(p + "a", b"3", xx=True)),
        ("mset", lambda: db.mset({p + "m1": b"x", p + "m2": b""})),
        ("mget", lambda: db.mget([p + "m1", p + "missing", p + "m2", p + "a"])),
        ("exists", lambda: db.exists(p + "m1")),
        ("exists missing", lambda: db.exists(p + "nope")),
        ("incr", lambda: db.incr(p + "n")),
        ("incr by", lambda: db.incr(p + "n", 41)),
        ("decr", lambda: db.decr(p + "n", 2)),
        ("ttl none", lambda: db.ttl(p + "a")),
        ("ttl missing", lambda: db.ttl(p + "missing")),
        ("expire", lambda: db.expire(p + "a", 100)),
        ("persist", lambda: db.persist(p + "a")),
        ("persist again", lambda: db.persist(p + "a")),
        ("cas swap", lambda: db.cas(p + "a", b"3", b"4")),
        ("cas miss", lambda: db.cas(p + "a", b"3", b"5")),
        ("cas absent", lambda: db.cas(p + "c", None, b"new")),
        ("scan", lambda: db.scan(p + "m", limit=10)),
        ("scan values", lambda: db.scan(p + "m", values=True)),
        ("delete", lambda: db.delete(p + "m1", p + "missing")),
        ("ping", lambda: db.ping()),
    ]


def test_every_command_answers_as_the_sync_client_does(shared_cluster):
    with shared_cluster.client() as sync:
        want = [(n, call()) for n, call in _script(sync, "aio1:s:")]

    async def main():
        async with _aclient(shared_cluster) as db:
            got = [(n, await call()) for n, call in _script(db, "aio1:a:")]
            # the scan pages name their own prefix: compare them without it
            async with db.pipeline() as p:
                p.get("aio1:a:a").incr("aio1:a:n").incr("aio1:a:c").ttl("aio1:a:missing")
            walked = [k async for k in db.scan_iter("aio1:a:", page=2)]
            status, stats = await db.status(), await db.stats()
            errs = []
            for bad in (lambda: db.incr("aio1:a:c"), lambda: db.scan(limit=0),
                        lambda: db.set("x", b"v", ttl=-1), lambda: db.set("x", "v", nx=True, xx=True)):
                with pytest.raises(errors.FlinError) as e:
                    await bad()
                errs.append(type(e.value))
            return got, p.results, walked, status, stats, errs

    got, results, walked, status, stats, errs = asyncio.run(main())
    strip = lambda r: r.replace(b"aio1:a:", b"").replace(b"aio1:s:", b"") if isinstance(r, bytes) else r

    def norm(name, r):
        if name.startswith("scan"):
            return [tuple(map(strip, i)) if isinstance(i, tuple) else strip(i) for i in r[0]], r[1]
        return r
    assert [(n, norm(n, r)) for n, r in got] == [(n, norm(n, r)) for n, r in want]
    assert results[:2] == [b"4", 41] and isinstance(results[2], errors.NotAnInteger)
    assert results[3] == -2.0
    assert walked == sorted(walked) and b"aio1:a:m2" in walked and b"aio1:a:m1" not in walked
    assert len(status["shards"]) == 8 and stats["router"]["requests"] > 0
    assert errs == [errors.NotAnInteger, errors.BadRequest, errors.InvalidArgument,
                    errors.InvalidArgument]


def test_a_thousand_coroutines_share_one_socket_coalesced(shared_cluster):
    """Each coroutine sets then gets its own key; the requests of one loop turn
    go out as one frame, so the router counts far fewer frames than requests."""
    n = 1000

    async def one(db, i):
        key = "aio2:%d" % i
        await db.set(key, b"v%d" % i)
        return await db.get(key) == b"v%d" % i

    async def main():
        async with _aclient(shared_cluster) as db:
            before = (await db.stats())["router"]["requests"]
            frames0 = db._mux.frames
            ok = await asyncio.gather(*(one(db, i) for i in range(n)))
            frames = db._mux.frames - frames0
            after = (await db.stats())["router"]["requests"]
            return ok, frames, after - before - 1, db._mux.pending
    ok, frames, routed, pending = asyncio.run(main())
    assert all(ok) and not pending
    print("\n[asyncio] %d requests went out in %d frames (router counted %d)"
          % (2 * n, frames, routed))
    assert routed == frames              # the router's count of frames agrees with ours
    assert frames <= 2 * n // 10, frames   # coalesced: at least 10 requests a frame on average


def test_cancelled_calls_leave_no_future_and_the_client_answers_right(shared_cluster):
    async def main():
        async with _aclient(shared_cluster) as db:
            await db.mset({"aio3:%d" % i: b"%d" % i for i in range(200)})
            tasks = [asyncio.create_task(db.get("aio3:%d" % i)) for i in range(100)]
            await asyncio.sleep(0)        # submitted; the next turn flushes them
            await asyncio.sleep(0)
            for t in tasks[::2]:          # half cancelled after the frame went out
                t.cancel()
            short = [asyncio.wait_for(db.get("aio3:%d" % i), 0.0001) for i in range(100, 200)]
            outcomes = await asyncio.gather(*tasks, *short, return_exceptions=True)
            cancelled = sum(isinstance(o, (asyncio.CancelledError, asyncio.TimeoutError))
                            for o in outcomes)
            await asyncio.sleep(0.3)      # the late replies arrive and are dropped
            leaked = dict(db._mux.pending)
            again = await asyncio.gather(*(db.get("aio3:%d" % i) for i in range(200)))
            return outcomes, cancelled, leaked, again, dict(db._mux.pending)
    outcomes, cancelled, leaked, again, after = asyncio.run(main())
    assert cancelled >= 50, cancelled
    for i, o in enumerate(outcomes):      # what was not cancelled is right
        assert isinstance(o, BaseException) or o == b"%d" % i, (i, o)
    assert leaked == {} and after == {}
    assert again == [b"%d" % i for i in range(200)]


def test_a_stopped_shard_times_out_within_the_timeout_and_others_still_answer(tmp_short):
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "30"]).start()
    mine = faultlib.keys_on(0, 4, 1)[0]
    other = faultlib.keys_on(3, 4, 1)[0]
    pid = faultlib.wait_worker(c, 0)

    async def main():
        async with _aclient(c, timeout=0.5) as db:
            await db.set(mine, b"m")
            await db.set(other, b"o")
            os.kill(pid, signal.SIGSTOP)
            t0 = time.monotonic()
            stuck = asyncio.create_task(db.get(mine))

            async def steady():               # the same socket, across the timeout
                n = 0
                while not stuck.done() or n < 3:
                    assert await db.get(other) == b"o"
                    n += 1
                return n
            fine = await steady()
            with pytest.raises((errors.Timeout, errors.ShardUnavailable)):
                await stuck
            took = time.monotonic() - t0
            no_reply_yet = dict(db._mux.pending)   # its reply never came: forgotten anyway
            os.kill(pid, signal.SIGCONT)
            later = await db.get(other)
            return fine, took, later, no_reply_yet
    try:
        fine, took, later, pending = asyncio.run(main())
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0
    assert fine > 3 and later == b"o" and pending == {}
    assert took < 0.5 + 0.3, took


def test_a_first_call_that_times_out_leaves_nothing_pending(tmp_short):
    """A client's first call carries the ROUTERS request in passing: the call's
    own id (not the one after it) is what times out and is forgotten."""
    c = make_cluster(tmp_short, 2, ["--shard-timeout", "30"]).start()
    mine = faultlib.keys_on(0, 2, 1)[0]
    pid = faultlib.wait_worker(c, 0)
    os.kill(pid, signal.SIGSTOP)

    async def main():
        async with _aclient(c, timeout=0.4, retries=0) as db:
            t0 = time.monotonic()
            with pytest.raises(errors.Timeout):
                await db.get(mine)
            return time.monotonic() - t0, dict(db._mux.pending)
    try:
        took, pending = asyncio.run(main())
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0
    assert pending == {} and took < 0.4 + 0.3, (pending, took)


def test_no_router_raises_connection_failed_and_a_new_loop_reconnects(shared_cluster, tmp_short):
    async def nowhere():
        async with flin.asyncio.Client("ipc://" + tmp_short + "/none.sock", timeout=0.3) as db:
            with pytest.raises(errors.ConnectionFailed):
                await db.get("k")
            return dict(db._mux.pending), list(db._mux.unsent)
    assert asyncio.run(nowhere()) == ({}, [])
    db = _aclient(shared_cluster)
    assert asyncio.run(db.ping()) is True
    assert asyncio.run(db.ping()) is True     # a second loop: a new socket, same client
    asyncio.run(db.close())


def test_a_request_past_the_message_limit_fails_alone(shared_cluster):
    """A turn's frame is split to stay under the router's limit: the one
    request too big for any frame raises TooLarge, the others are answered."""
    from flin import protocol

    async def main():
        async with _aclient(shared_cluster) as db:
            big = db.set("aio5:big", b"x" * (protocol.MAX_MESSAGE + 1))
            small = [db.set("aio5:%d" % i, b"s") for i in range(5)]
            out = await asyncio.gather(big, *small, return_exceptions=True)
            return out, await db.get("aio5:4"), await db.get("aio5:big"), db._mux.pending
    out, four, big, pending = asyncio.run(main())
    assert isinstance(out[0], errors.TooLarge) and out[1:] == [None] * 5
    assert four == b"s" and big is None and pending == {}


def test_it_runs_on_uvloop_when_present(shared_cluster):
    uvloop = pytest.importorskip("uvloop")      # optional: never required

    async def main():
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with _aclient(shared_cluster) as db:
            await asyncio.gather(*(db.set("aio6:%d" % i, b"%d" % i) for i in range(200)))
            got = await asyncio.gather(*(db.get("aio6:%d" % i) for i in range(200)))
            task = asyncio.create_task(db.get("aio6:0"))
            await asyncio.sleep(0)
            task.cancel()
            return got, await db.get("aio6:1"), db._mux.frames, db._mux.pending
    got, one, frames, pending = uvloop.run(main())
    assert got == [b"%d" % i for i in range(200)] and one == b"1" and pending == {}
    assert frames <= 10, frames
