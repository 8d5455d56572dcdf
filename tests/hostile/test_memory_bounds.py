"""Memory is bounded in bytes, not in messages: replies a client does not
read, the result of one request, and requests queued for a shard that does
not answer. Each test drives a real cluster with 64 MiB-class values and
reads the router's and the workers' resident memory from /proc (VmRSS, and
VmHWM reset before the attack, so that the peak counts too).

The shard timeout is raised in these tests so that they measure memory, not
the stall detector (``tests/faults/test_big_values.py`` covers that)."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from flin import errors, linkframe, protocol
from flin.protocol import GET, SET, ErrorReply
from tests.support import faults as faultlib
from tests.support.cluster import make_cluster
from tests.support.hostile import hwm_kib, reset_hwm, rss_kib, zmtp_connect, zmtp_frame

MIB = 1024                      # KiB per MiB
GUARD_KIB = 1024 * MIB          # stop an attack (and fail) once a process grew this much


def _stop(cluster, clean: bool) -> None:
    """Stop the cluster; after a failure SIGKILL it (a worker may be deep in
    a giant batch), never leaving a process behind."""
    if clean:
        assert cluster.stop() == 0
    elif cluster.proc is not None:
        cluster.kill()


def _grown(pids: dict[str, int], base: dict[str, int]) -> dict[str, int]:
    return {name: rss_kib(pid) - base[name] for name, pid in pids.items()}


def test_unread_replies_are_bounded_in_bytes(tmp_short):
    """A peer that asks for a 64 MiB value again and again and never reads a
    reply (a raw ZMTP socket: not even its I/O thread reads). The router
    keeps three replies' worth for it (two in ZeroMQ, one waiting: 192 MiB;
    bounded here at 320 MiB, as a baseline taken after a 64 MiB SET may be
    off by one value), then answers it Overloaded without reading the value
    again; another client is served meanwhile. Before: 1.2 GB after 21 GETs."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "30"]).start()
    clean = False
    try:
        key = faultlib.keys_on(1, 4, 1, "big")[0]
        value = os.urandom(64 << 20)
        with c.client(timeout=30) as cl:
            cl.set(key, value)
        pids = {"router": faultlib.router_pid(c), "worker": faultlib.wait_worker(c, 1)}
        base = {name: rss_kib(pid) for name, pid in pids.items()}
        for pid in pids.values():
            reset_hwm(pid)
        peer = zmtp_connect(c.endpoint)
        try:
            for i in range(24):                   # 1.5 GiB of replies asked for
                peer.sendall(zmtp_frame(protocol.encode(i + 1, [[GET, key]])))
                time.sleep(0.25)
                grown = _grown(pids, base)
                assert max(grown.values()) < GUARD_KIB, \
                    "after %d unread GETs of 64 MiB, grown KiB: %s" % (i + 1, grown)
            time.sleep(1.0)
            grown = _grown(pids, base)
            peak = {name: hwm_kib(pid) - base[name] for name, pid in pids.items()}
            print("\n[memory] 24 unread GETs of 64 MiB: grown %s KiB, peak %s KiB"
                  % (grown, peak))
            assert grown["router"] < 320 * MIB, grown
            assert peak["router"] < 640 * MIB, peak
            assert peak["worker"] < 512 * MIB, peak
            with c.client(timeout=5, retries=0) as other:
                t0 = time.monotonic()
                other.set(b"other", b"x")
                assert other.get(b"other") == b"x"
                took = time.monotonic() - t0
            print("[memory] another client's SET+GET meanwhile: %.3fs" % took)
            assert took < 2.0
        finally:
            peer.close()
        clean = True
    finally:
        _stop(c, clean)


def test_mget_of_one_big_key_repeated_is_too_large(tmp_short):
    """MGET of one 16 MiB key 32 times (512 MiB of result from 10 bytes of
    keys) is answered TooLarge by the shard before it builds the result;
    neither the worker nor the router holds it; others are served meanwhile;
    a result within the limit (4 x 16 MiB) is answered."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "30"]).start()
    clean = False
    try:
        key = faultlib.keys_on(2, 4, 1, "big")[0]
        other_key = faultlib.keys_on(2, 4, 2, "small")[1]
        value = os.urandom(16 << 20)
        with c.client(timeout=30) as cl:
            cl.set(key, value)
        pids = {"router": faultlib.router_pid(c), "worker": faultlib.wait_worker(c, 2)}
        base = {name: rss_kib(pid) for name, pid in pids.items()}
        for pid in pids.values():
            reset_hwm(pid)
        slow: list[float] = []
        failed: list[str] = []
        done = threading.Event()

        def others() -> None:
            with c.client(timeout=5, retries=0) as o:
                while not done.is_set():
                    t0 = time.monotonic()
                    try:
                        o.set(other_key, b"v")
                    except errors.FlinError as exc:
                        failed.append(repr(exc))
                    slow.append(time.monotonic() - t0)
                    time.sleep(0.01)

        t = threading.Thread(target=others)
        t.start()
        try:
            with c.client(timeout=60, retries=0) as cl:
                t0 = time.monotonic()
                try:
                    outcome: object = cl.execute([[protocol.MGET, [key] * 32]])[0]
                except errors.FlinError as exc:
                    outcome = exc
                took = time.monotonic() - t0
                peak = {name: hwm_kib(pid) - base[name] for name, pid in pids.items()}
                print("\n[memory] MGET of a 16 MiB key x32: %s in %.2fs; peak grown %s KiB"
                      % (outcome if isinstance(outcome, (ErrorReply, Exception))
                         else "%d values" % len(outcome), took, peak))
                assert peak["worker"] < 256 * MIB, peak
                assert peak["router"] < 256 * MIB, peak
                assert type(outcome) is ErrorReply and outcome.code == errors.TooLarge.code, outcome
                assert cl.mget([key] * 4) == [value] * 4
        finally:
            done.set()
            t.join()
        assert not failed, failed
        assert slow and max(slow) < 2.0, max(slow)
        clean = True
    finally:
        _stop(c, clean)


def test_requests_queued_for_a_stopped_shard_are_bounded_in_bytes(tmp_short):
    """SETs of 32 MiB values to a SIGSTOPped shard: the router queues a
    bounded number of bytes for it and answers the rest Overloaded at once
    (not a count of 100,000 ops, which would let one batch pass 4 GiB);
    after SIGCONT every queued SET is applied."""
    c = make_cluster(tmp_short, 4, ["--shard-timeout", "60"]).start()
    clean = False
    shard = 1
    pid = faultlib.wait_worker(c, shard)
    try:
        keys = faultlib.keys_on(shard, 4, 20, "q")
        value = os.urandom(32 << 20)
        router = faultlib.router_pid(c)
        base = rss_kib(router)
        reset_hwm(router)
        os.kill(pid, signal.SIGSTOP)
        answers: dict[int, object] = {}
        with c.client(timeout=60, retries=0) as cl:
            rids = {}
            for k in keys:                        # 640 MiB offered
                rids[cl.submit([[SET, k, value, None, 0]])] = k
                assert rss_kib(router) - base < GUARD_KIB
            while True:                           # the refusals come at once
                try:
                    rid, res = cl.receive(2.0)
                except errors.Timeout:
                    break
                answers[rid] = res[0]
            grown, peak = rss_kib(router) - base, hwm_kib(router) - base
            refused = [r for r in answers.values()
                       if type(r) is ErrorReply and r.code == errors.Overloaded.code]
            os.kill(pid, signal.SIGCONT)
            while len(answers) < len(rids):
                rid, res = cl.receive(60.0)
                answers[rid] = res[0]
            applied = [rids[r] for r, res in answers.items() if res is None]
            print("\n[memory] 20 SETs of 32 MiB to a stopped shard: %d refused at once, "
                  "router grown %d KiB (peak %d); %d applied after SIGCONT"
                  % (len(refused), grown, peak, len(applied)))
            assert len(refused) >= 10, answers
            assert grown < 512 * MIB and peak < 768 * MIB, (grown, peak)
            assert len(applied) + len(refused) == len(keys), answers
            for k in applied[:2]:
                assert cl.get(k) == value
        clean = True
    finally:
        os.kill(pid, signal.SIGCONT)
        _stop(c, clean)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A 4-shard cluster with the default shard timeout, for the limits of one request."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, 4).start()
        yield c
        assert c.stop() == 0


def test_pipeline_results_past_the_reply_limit_are_too_large(four):
    """One request of six GETs of a 16 MiB value: its results together may
    hold MAX_REPLY bytes; the entry past that is TooLarge, the others are
    answered (a retry alone, or in a smaller pipeline, is served)."""
    key = faultlib.keys_on(0, 4, 1, "pipe")[0]
    value = os.urandom(16 << 20)
    with four.client(timeout=30) as cl:
        cl.set(key, value)
        results = cl.execute([[GET, key]] * 6)          # 96 MiB asked for
        assert results[:5] == [value] * 5
        assert type(results[5]) is ErrorReply and results[5].code == errors.TooLarge.code, \
            results[5] if type(results[5]) is ErrorReply else "a value"
        assert cl.get(key) == value


def test_mget_over_shards_past_the_reply_limit_is_too_large(four):
    """Three 30 MiB values on three shards: each shard's part is within the
    limit, the MGET's result is not; the router lets go of the parts."""
    keys = [faultlib.keys_on(s, 4, 1, "spread")[0] for s in (1, 2, 3)]
    value = os.urandom(30 << 20)
    with four.client(timeout=30) as cl:
        for k in keys:
            cl.set(k, value)
        with pytest.raises(errors.TooLarge):
            cl.mget(keys)
        assert cl.mget(keys[:2]) == [value, value]


def test_scan_pages_with_big_values_are_bounded_in_bytes(four):
    """SCAN with values over eight 16 MiB values (128 MiB): each page holds
    about MAX_REPLY bytes at most, and the walk still yields every pair once."""
    keys = sorted(b"sc:%d" % i for i in range(8))
    value = os.urandom(16 << 20)
    with four.client(timeout=30) as cl:
        for k in keys:
            cl.set(k, value)
        cursor, pages, seen = None, 0, []
        while True:
            items, cursor = cl.scan(b"sc:", cursor, 100, values=True)
            pages += 1
            assert sum(len(k) + len(v) for k, v in items) <= protocol.MAX_REPLY + (16 << 20)
            seen += items
            if cursor is None:
                break
        assert [k for k, _ in seen] == keys and all(v == value for _, v in seen)
        assert pages >= 2


def test_link_frame_refuses_four_gib():
    """The link's length prefix is 4 bytes: a payload of 4 GiB or more is a
    clear error, not struct.error (an anonymous mmap: no memory is touched)."""
    import mmap
    huge = mmap.mmap(-1, 1 << 32)
    try:
        with pytest.raises(ValueError, match="4 GiB"):
            linkframe.link_frame(huge)  # type: ignore[arg-type]
    finally:
        huge.close()
