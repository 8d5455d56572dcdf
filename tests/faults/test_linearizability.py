"""Catalogue 6: concurrent GET/SET/CAS on a few keys from several client
processes while shard workers are SIGKILLed: each key's history must be
linearizable (Wing & Gong search; an operation whose outcome is unknown may
or may not have taken effect, at any time after its invocation)."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import pytest

from tests.support.cluster import make_cluster
from tests.support import faults as faultlib
from tests.support.faults import SOAK

INF = math.inf


def _step(state, op):
    """Apply ``op`` to ``state``: (ok, new state). ``op`` = (kind, a, b, result, known)."""
    kind, a, b, res, known = op
    if kind == "set":
        return True, a
    if kind == "get":
        return res == state, state
    hit = state == a                                     # cas
    if not known:
        return True, b if hit else state
    return res == hit, b if hit else state


def linearizable(ops: list) -> bool:
    """``ops``: (invoke, complete or None, kind, a, b, result). True if some
    order of all completed ops and any subset of the unknown ones, each
    placed between its invocation and completion, explains every result."""
    ops = sorted(ops, key=lambda o: o[0])
    inv = [o[0] for o in ops]
    ret = [INF if o[1] is None else o[1] for o in ops]
    body = [(o[2], o[3], o[4], o[5], o[1] is not None) for o in ops]
    must = 0
    for i, o in enumerate(ops):
        if o[1] is not None:
            must |= 1 << i
    n = len(ops)
    seen: set = set()
    sys.setrecursionlimit(max(1000, 4 * n + 100))

    def search(done: int, state) -> bool:
        if done & must == must:
            return True
        if (done, state) in seen:
            return False
        seen.add((done, state))
        # the earliest completion among the ops not yet placed bounds the next one
        horizon = min((ret[i] for i in range(n) if not done >> i & 1), default=INF)
        for i in range(n):
            if done >> i & 1:
                continue
            if inv[i] > horizon:
                break
            ok, nxt = _step(state, body[i])
            if ok and search(done | 1 << i, nxt):
                return True
        return False

    return search(0, None)


def test_checker_rejects_and_accepts():
    """The checker can fail: a stale read after a completed write is refused,
    and an unknown write may explain a read either way."""
    assert linearizable([(0, 1, "set", "a", None, None), (2, 3, "get", None, None, "a")])
    assert not linearizable([(0, 1, "set", "a", None, None), (2, 3, "get", None, None, None)])
    assert not linearizable([(0, 1, "set", "a", None, None), (2, 3, "set", "b", None, None),
                             (4, 5, "get", None, None, "a")])
    assert linearizable([(0, 3, "set", "a", None, None), (1, 2, "get", None, None, "a"),
                         (1.5, 4, "get", None, None, None)])    # the None read went first
    assert linearizable([(0, None, "set", "a", None, None), (5, 6, "get", None, None, "a"),
                         (7, 8, "get", None, None, "a")])
    assert linearizable([(0, None, "set", "a", None, None), (5, 6, "get", None, None, None)])
    assert not linearizable([(0, None, "set", "a", None, None), (5, 6, "get", None, None, "a"),
                             (7, 8, "get", None, None, None)])
    assert linearizable([(0, 1, "cas", None, "x", True), (2, 3, "cas", None, "y", False),
                         (4, 5, "get", None, None, "x")])
    assert not linearizable([(0, 1, "cas", None, "x", True), (2, 3, "cas", None, "y", True)])


def histories(outs: list[str], keys: list[str]) -> dict:
    """Each key's ops ``(invoke, complete or None, kind, a, b, result)``, from
    the files the ``lin`` client processes wrote."""
    hist: dict = {k: [] for k in keys}
    for out in outs:
        with open(out) as f:
            for key, kind, a, b, t0, t1, res in json.load(f):
                hist[key].append((t0, t1, kind, a, b, res))
    return hist


def _run(tmp_short: str, seconds: float, clients: int, nkeys: int) -> None:
    c = make_cluster(tmp_short, 2, ["--shard-timeout", "1"]).start()
    keys = ["lin:%d" % i for i in range(nkeys)]
    outs = [os.path.join(tmp_short, "lin-%d.json" % i) for i in range(clients)]
    try:
        procs = [faultlib.spawn(["lin", c.endpoint, "p%d" % i, str(seconds), str(i), outs[i], *keys])
                 for i in range(clients)]
        try:
            time.sleep(0.5)
            kills = faultlib.killer(c, seconds - 0.5, "worker", (0.2, 0.5), seed=6)
        finally:
            faultlib.reap(procs, 60)
        assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
        faultlib.all_up(c)
    finally:
        assert c.stop() == 0
    hist = histories(outs, keys)
    sizes, unknown = [], 0
    t0 = time.monotonic()
    for key, ops in hist.items():
        sizes.append(len(ops))
        unknown += sum(1 for o in ops if o[1] is None)
        assert linearizable(ops), "history of %s is not linearizable: %s" % (
            key, sorted(ops, key=lambda o: o[0]))
    check_s = time.monotonic() - t0
    print("\n[catalogue 6] %d SIGKILLs; ops per key %s (%d with unknown outcome); "
          "all linearizable (checked in %.2fs)" % (kills, sizes, unknown, check_s))
    assert kills >= 2 and min(sizes) >= 20, (kills, sizes)


def test_linearizable_while_workers_killed(tmp_short):
    _run(tmp_short, 5.0, 3, 3)


@pytest.mark.soak
def test_linearizable_soak(tmp_short):
    for rnd in range(5 if SOAK else 1):
        d = os.path.join(tmp_short, "r%d" % rnd)
        os.makedirs(d)
        _run(d, 8.0, 4, 2)
