"""The cluster-mode fences of a shard, on real LevelDBs: the lease's write
deadline (``fencing.lease_fence``, and ``Store.settle`` for a commit that
ends past it) and the durable fence of a whole-shard move (``handoff.py``)."""
from __future__ import annotations

import os
import time

from flin import errors
from flin.protocol import GET, MOVE_ABORT, MOVE_BEGIN, MOVE_FENCE, MOVE_SWITCH, SET, ErrorReply
from flin.ring import Ring
from flin.shardworker import fencing, handoff, moving
from flin.shardworker.handlers import HANDLERS
from flin.shardworker.store import Store


def _store(path: str) -> Store:
    s = Store(path, HANDLERS, shard=0, create=True)
    moving.on_start(s, Ring(1), 1)
    return s


def test_writes_stop_at_the_lease_deadline_and_reads_go_on(tmp_path):
    s = _store(str(tmp_path / "s"))
    try:
        fencing.lease_fence(s, {"writable_until": time.monotonic() + 60}, "n1")
        assert s.apply([[SET, b"k", b"v", None, 0]]) == [None]
        fencing.lease_fence(s, {"writable_until": time.monotonic() - 1,
                                "etcd": {"error": "timed out"}}, "n1")
        got = s.apply([[SET, b"k", b"w", None, 0], [GET, b"k"]])
        assert type(got[0]) is ErrorReply and got[0].code == errors.ShardUnavailable.code
        assert "etcd lease" in got[0].message and got[1] == b"v"
    finally:
        s.close()


def test_a_commit_that_ends_past_the_deadline_acknowledges_nothing(tmp_path):
    s = _store(str(tmp_path / "s"))
    try:
        fencing.lease_fence(s, {"writable_until": time.monotonic() + 0.05}, "n1")
        real = s._commit

        def slow_commit():           # the real LevelDB write, ending past the deadline
            time.sleep(0.1)
            return real()
        s._commit = slow_commit      # type: ignore[method-assign]
        got = s.apply([[SET, b"k", b"v", None, 0]])
        assert type(got[0]) is ErrorReply and got[0].code == errors.OutcomeUnknown.code
    finally:
        s.close()


def test_the_move_fence_is_durable_and_only_the_outcome_ends_it(tmp_path):
    path = str(tmp_path / "s")
    s = _store(path)
    s.apply([[SET, b"k", b"v", None, 0]])
    assert s.apply([[MOVE_BEGIN, handoff.WHOLE, 0, "m1"]]) == [True]
    wrong = s.apply([[MOVE_FENCE, "m2"]])[0]          # another mover's id: refused
    assert type(wrong) is ErrorReply
    assert s.apply([[MOVE_FENCE, "m1"]]) == [0]
    assert s.apply([[MOVE_ABORT, "m2"]]) == [False]    # not this move's abort
    assert os.path.exists(os.path.join(path, handoff.FENCED))
    s.close()
    s = _store(path)                                   # a restart: still fenced
    try:
        got = s.apply([[GET, b"k"], [SET, b"k", b"w", None, 0]])
        assert all(type(r) is ErrorReply and r.code == errors.Moved.code for r in got)
        handoff.settle(s, {"move": {"id": "m1", "state": "copy"}})   # not ended yet
        assert type(s.apply([[GET, b"k"]])[0]) is ErrorReply
        bad = s.apply([[MOVE_SWITCH, handoff.WHOLE, 2, "m9"]])[0]      # not fenced for m9
        assert type(bad) is ErrorReply and s.handed_off_at is None
        handoff.settle(s, {"outcomes": {"0": [["m0", "done"], ["m1", "failed"]]}})
        assert s.apply([[GET, b"k"]]) == [b"v"]        # called off: serving again
        assert not os.path.exists(os.path.join(path, handoff.FENCED))
    finally:
        s.close()


def test_a_fenced_shard_hands_off_when_the_move_committed(tmp_path):
    path = str(tmp_path / "s")
    s = _store(path)
    try:
        s.apply([[MOVE_BEGIN, handoff.WHOLE, 0, "m1"], [MOVE_FENCE, "m1"]])
        handoff.settle(s, {"move": {"id": "m1", "state": "switch", "epoch": 3}})
        assert s.handed_off_at is not None and handoff.handed_off(path)
        assert type(s.apply([[GET, b"k"]])[0]) is ErrorReply
    finally:
        s.close()
