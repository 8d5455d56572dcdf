"""The Jepsen-style history recorder and checkers (``tests.support.jepsen``).

Each checker is shown to pass correct histories and to fail broken ones.
Times are given explicitly (``at=``), in seconds.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any, Optional

import pytest

from tests.support.jepsen import (
    History, Op, check_linearizable, lost_writes, two_primaries,
)

K = b"k"


def rec(h: History, p: str, f: str, value: Any, start: float, end: Optional[float],
        result: Any = None, status: str = "ok", key: Any = K) -> Op:
    """Record one op over [start, end] with the given outcome."""
    op = h.invoke(p, key, f, value, at=start)
    if status == "ok":
        h.ok(op, result, at=end)
    elif status == "fail":
        h.fail(op, at=end)
    elif status == "info":
        h.info(op, at=end)
    return op


# ---------------------------------------------------------------- History
def test_history_records_from_many_threads() -> None:
    h = History()

    def client(p: int) -> None:
        for i in range(200):
            op = h.invoke("p%d" % p, K, "write", b"p%d-%d" % (p, i))
            h.ok(op)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = h.ops
    assert len(ops) == len(h) == 800
    assert sorted(op.index for op in ops) == list(range(800))
    assert all(op.status == "ok" and op.end is not None and op.end >= op.start for op in ops)


def test_history_rejects_misuse() -> None:
    h = History()
    with pytest.raises(ValueError):
        h.invoke("p0", K, "incr", 1)
    with pytest.raises(ValueError):
        h.invoke("p0", K, "write", "not bytes")
    with pytest.raises(ValueError):
        h.invoke("p0", K, "cas", b"x")
    op = h.invoke("p0", K, "cas", (None, b"x"))
    with pytest.raises(ValueError):
        h.ok(op, "yes")
    h.ok(op, True)
    with pytest.raises(ValueError):
        h.fail(op)
    assert "cas None -> b'x'" in op.describe() and "=> True" in op.describe()


# ---------------------------------------------------------------- linearizability
def test_sequential_history_passes() -> None:
    h = History()
    rec(h, "p0", "read", None, 0, 1, None)
    rec(h, "p0", "write", b"a", 2, 3)
    rec(h, "p1", "read", None, 4, 5, b"a")
    rec(h, "p1", "write", b"b", 6, 7)
    rec(h, "p0", "read", None, 8, 9, b"b")
    assert check_linearizable(h) == (True, "linearizable: 5 ops on 1 keys")


@pytest.mark.parametrize("seen", [b"a", b"b"])
def test_concurrent_writes_read_either_value_passes(seen: bytes) -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 10)
    rec(h, "p1", "write", b"b", 1, 9)
    rec(h, "p2", "read", None, 11, 12, seen)
    rec(h, "p2", "read", None, 13, 14, seen)
    ok, msg = check_linearizable(h)
    assert ok, msg


def test_read_concurrent_with_write_sees_old_or_new() -> None:
    for seen in (None, b"a"):
        h = History()
        rec(h, "p0", "write", b"a", 0, 10)
        rec(h, "p1", "read", None, 1, 2, seen)
        assert check_linearizable(h)[0]


def test_stale_read_after_completed_write_fails() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1, key=b"acct")
    rec(h, "p0", "write", b"b", 2, 3, key=b"acct")
    stale = rec(h, "p1", "read", None, 4, 5, b"a", key=b"acct")
    ok, msg = check_linearizable(h)
    assert not ok
    assert "b'acct'" in msg
    assert "#%d" % stale.index in msg and "could not be linearized" in msg
    assert "left the register at b'b'" in msg
    assert msg.count("\n") < 30   # a small window, not the whole history


def test_read_of_value_never_written_fails() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "read", None, 0.5, 2, b"zzz")
    ok, msg = check_linearizable(h)
    assert not ok and "b'zzz'" in msg and "b'k'" in msg


def test_keys_are_independent_and_key_filter() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1, key=b"x")
    rec(h, "p0", "write", b"b", 0, 1, key=b"y")
    rec(h, "p1", "read", None, 2, 3, b"a", key=b"x")
    rec(h, "p1", "read", None, 2, 3, b"a", key=b"y")     # wrong for y
    assert check_linearizable(h, key=b"x")[0]
    ok, msg = check_linearizable(h)
    assert not ok and msg.startswith("key b'y'")
    assert check_linearizable(h, key=b"nothing")[0]


def test_failed_ops_and_unknown_reads_are_dropped() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "write", b"never", 2, 3, status="fail")
    rec(h, "p2", "read", None, 2, 3, status="info")
    rec(h, "p0", "read", None, 4, 5, b"a")
    assert check_linearizable(h)[0]
    rec(h, "p0", "read", None, 6, 7, b"never")           # a failed write must not show up
    assert not check_linearizable(h)[0]


def test_info_write_that_later_appears_passes() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "write", b"b", 2, 3, status="info")     # timed out
    rec(h, "p0", "read", None, 4, 5, b"a")               # not yet applied
    rec(h, "p0", "read", None, 6, 7, b"b")               # applied long after its "end"
    rec(h, "p2", "read", None, 8, 9, b"b")
    ok, msg = check_linearizable(h)
    assert ok, msg
    never = History()                                    # or it never takes effect
    rec(never, "p0", "write", b"a", 0, 1)
    rec(never, "p1", "write", b"b", 2, 3, status="info")
    rec(never, "p0", "read", None, 4, 5, b"a")
    assert check_linearizable(never)[0]


def test_info_write_that_appears_disappears_and_reappears_fails() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "write", b"b", 2, 3, status="info")
    rec(h, "p0", "read", None, 4, 5, b"b")
    rec(h, "p0", "read", None, 6, 7, b"a")               # b vanished, a came back
    rec(h, "p0", "read", None, 8, 9, b"b")
    ok, msg = check_linearizable(h)
    assert not ok and "could not be linearized" in msg


def test_never_completed_op_counts_as_unknown() -> None:
    h = History()
    h.invoke("p1", K, "write", b"b", at=0)               # its client died
    rec(h, "p0", "read", None, 1, 2, b"b")
    assert check_linearizable(h)[0]


def test_cas_history_passes() -> None:
    h = History()
    rec(h, "p0", "cas", (None, b"a"), 0, 1, True)        # absent -> a
    rec(h, "p1", "cas", (None, b"x"), 2, 3, False)       # lost the race: no effect
    rec(h, "p1", "cas", (b"a", b"b"), 4, 5, True)
    rec(h, "p0", "cas", (b"a", b"c"), 4.5, 6, False)     # concurrent, placed after
    rec(h, "p2", "cas", (b"b", b"d"), 7, 8, status="info")
    rec(h, "p0", "read", None, 9, 10, b"d")
    ok, msg = check_linearizable(h)
    assert ok, msg


@pytest.mark.parametrize("expected,result", [(b"a", False), (b"zz", True)])
def test_wrong_cas_result_fails(expected: bytes, result: bool) -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "cas", (expected, b"b"), 2, 3, result)
    ok, msg = check_linearizable(h)
    assert not ok and "cas %r -> b'b' => %r" % (expected, result) in msg


def test_many_unknown_writes_that_never_appear_pass_fast() -> None:
    h = History()
    t = 0.0
    for i in range(300):
        if i % 25 == 0:
            rec(h, "p9", "write", b"lost-%d" % i, t, t + 0.5, status="info")
        rec(h, "p0", "write", b"v%d" % i, t, t + 1)
        rec(h, "p1", "read", None, t + 1.5, t + 2, b"v%d" % i)
        t += 2.5
    start = time.perf_counter()
    ok, msg = check_linearizable(h)
    assert ok, msg
    assert time.perf_counter() - start < 2.0


def simulate(rng: random.Random, procs: int = 4, n: int = 500,
             corrupt: bool = False) -> History:
    """A correct register's history: each op takes effect at a random point of
    its interval; ``corrupt`` makes one middle read answer a stale value."""
    plan: list[tuple[int, int, float, float, float, str]] = []
    for p in range(procs):
        t = rng.random()
        for i in range(n):
            start = t + rng.random() * 0.3
            end = start + rng.expovariate(1.0)
            t = end
            plan.append((p, i, start, end, rng.uniform(start, end), rng.choice("rrwwc")))
    state: Optional[bytes] = None
    ops: list[tuple[float, float, int, str, Any, Any]] = []
    history: list[Optional[bytes]] = [None]
    for p, i, start, end, _lin, kind in sorted(plan, key=lambda x: x[4]):
        if kind == "r":
            ops.append((start, end, p, "read", None, state))
        elif kind == "w":
            state = b"p%d-%d" % (p, i)
            history.append(state)
            ops.append((start, end, p, "write", state, None))
        else:
            expected = state if rng.random() < 0.5 else rng.choice(history)
            new = b"p%d-%d" % (p, i)
            hit = expected == state
            if hit:
                state = new
                history.append(new)
            ops.append((start, end, p, "cas", (expected, new), hit))
    ops.sort()
    if corrupt:
        reads = [j for j, o in enumerate(ops) if o[3] == "read"]
        j = reads[len(reads) // 2]
        s, e, p, f, v, _r = ops[j]
        ops[j] = (s, e, p, f, v, b"p0-0" if ops[j][5] != b"p0-0" else b"p1-0")
    h = History()
    for start, end, p, f, value, result in ops:
        rec(h, "p%d" % p, f, value, start, end, result)
    return h


def test_performance_4_processes_x_500_ops() -> None:
    h = simulate(random.Random(7))
    assert len(h) == 2000
    start = time.perf_counter()
    ok, msg = check_linearizable(h)
    elapsed = time.perf_counter() - start
    assert ok, msg
    assert elapsed < 2.0, elapsed


@pytest.mark.parametrize("seed", range(5))
def test_simulated_histories_pass_and_a_corrupted_one_fails(seed: int) -> None:
    rng = random.Random(seed)
    assert check_linearizable(simulate(rng, n=150))[0]
    start = time.perf_counter()
    ok, msg = check_linearizable(simulate(random.Random(seed), n=150, corrupt=True))
    assert not ok and "could not be linearized" in msg and msg.startswith("key b'k'")
    assert time.perf_counter() - start < 5.0


# ---------------------------------------------------------------- lost writes
def test_lost_acked_write_is_reported() -> None:
    h = History()
    a = rec(h, "p0", "write", b"a", 0, 1)
    b = rec(h, "p1", "write", b"b", 2, 3)
    assert lost_writes(h, {K: b"b"}) == []
    assert lost_writes(h, {K: b"a"}) == [b]               # a ended before b started
    assert lost_writes(h, {K: None}) == [a, b]
    assert lost_writes(h, {K: b"garbage"}) == [a, b]


def test_lost_writes_accepts_concurrent_and_unknown_writers() -> None:
    h = History()
    rec(h, "p0", "write", b"a", 0, 1)
    rec(h, "p1", "write", b"b", 2, 5)
    rec(h, "p2", "write", b"c", 3, 4)                     # concurrent with b
    assert lost_writes(h, {K: b"b"}) == [] and lost_writes(h, {K: b"c"}) == []
    rec(h, "p3", "write", b"late", 0.5, 0.6, status="info")   # may apply any time later
    assert lost_writes(h, {K: b"late"}) == []
    rec(h, "p3", "write", b"refused", 0.5, 0.6, status="fail")
    assert len(lost_writes(h, {K: b"refused"})) == 3
    rec(h, "p0", "cas", (b"b", b"d"), 10, 11, True)
    assert [op.value for op in lost_writes(h, {K: b"b"})] == [(b"b", b"d")]
    assert lost_writes(h, {K: b"d"}) == []
    assert lost_writes(h, {b"other": b"x"}) == []         # only keys given are checked


# ---------------------------------------------------------------- split brain
def test_two_primaries() -> None:
    acks = [(0, 1, "n1"), (0, 1, "n1"), (1, 1, "n2"), (0, 2, "n2"), (0, 1, "n3"), (1, 2, "n1")]
    assert two_primaries(acks) == [(0, 1)]
    assert two_primaries(acks[:4]) == []
