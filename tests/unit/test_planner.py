"""The router's planner, alone: how commands split into shard ops, how the
answers combine (scan merge included), and what it refuses."""
from __future__ import annotations

import pytest

from flin import errors, protocol
from flin.protocol import (
    COMPACT, DEL, GET, MGET, MSET, NX, PING, SCAN, SET, SHARD, SNAPSHOT_READ, STATS, STATUS,
    ErrorReply,
)
from flin.ring import Ring
from flin.router.planner import Invalid, Planner, _merge_scan


class View:
    """A ClusterView with fixed answers."""

    def __init__(self, uptime: float = 12.5) -> None:
        self._uptime = uptime

    def supervisor_state(self) -> dict:
        return {"supervisor": 42,
                "routers": [{"id": 0, "pid": 1, "deaths": 2}, {"id": 1, "pid": 77, "deaths": 1},
                            {"id": 2, "pid": None, "deaths": 3}],
                "shards": [{"pid": 100 + s, "deaths": s, "broken": None} for s in range(4)]}

    def me(self) -> int:
        return 0

    def endpoints(self) -> list:
        return ["ipc:///r", "ipc:///r.1", "ipc:///r.2"]

    def alive(self, pid: int) -> bool:
        return pid == 77

    def router_stats(self) -> dict:
        return {"requests": 7}

    def cache_stats(self, shard: int) -> dict | None:
        return {"hits": shard, "misses": 0}

    def uptime(self) -> float:
        return self._uptime

    def epoch(self) -> int:
        return 1

    def cluster(self) -> dict | None:
        return None

    def resp(self) -> str | None:
        return None


RING = Ring(4)
P = Planner(RING, View())


def test_single_key_commands_go_to_the_keys_shard_as_they_are():
    cmd = [SET, b"k", b"v", None, 0]
    subops, finish = P.plan(cmd)
    assert subops == [(RING.shard(b"k"), cmd)] and finish is None
    assert P.plan([GET, b"k"]) == ([(RING.shard(b"k"), [GET, b"k"])], None)


def test_mget_is_one_op_per_shard_and_answers_in_the_callers_order():
    keys = [b"k%d" % i for i in range(40)]
    subops, finish = P.plan([MGET, keys])
    assert sorted(s for s, _ in subops) == sorted({RING.shard(k) for k in keys})
    # each shard answers its keys with their upper-cased names, in its part's order
    answers = [[k.upper() for k in op[1]] for _, op in subops]
    assert finish(answers) == [k.upper() for k in keys]
    err = ErrorReply(errors.ShardUnavailable.code, "down")
    assert finish([err] + answers[1:]) == err


def test_mset_keeps_each_shards_pairs_together_and_del_sums():
    flat = [b"a", b"1", b"b", b"2", b"c", b"3", b"d", b"4"]
    subops, finish = P.plan([MSET, flat, 500])
    pairs = {}
    for shard, op in subops:
        assert op[0] == MSET and op[2] == 500
        for k, v in zip(op[1][::2], op[1][1::2]):
            assert RING.shard(k) == shard
            pairs[k] = v
    assert pairs == dict(zip(flat[::2], flat[1::2]))
    assert finish([None] * len(subops)) is None
    subops, finish = P.plan([DEL, [b"a", b"b", b"c"]])
    assert finish([1] * len(subops)) == len(subops)


@pytest.mark.parametrize("cmd,cls,why", [
    ("not a list", errors.BadRequest, "array that starts"),
    ([99], errors.BadRequest, "unknown command 99"),
    ([GET], errors.BadRequest, "GET takes 1 arguments"),
    ([GET, "str"], errors.BadRequest, "msgpack bin"),
    ([GET, b"k" * 70_000], errors.TooLarge, "key of 70000 bytes"),
    ([SET, b"k", b"v", 0, 0], errors.BadRequest, "ttl must be"),
    ([SET, b"k", b"v", None, 3], errors.BadRequest, "flags must be"),
    ([SET, b"k", b"v", None, 1.0], errors.BadRequest, "flags must be"),
    ([MSET, [b"k"], None], errors.BadRequest, "flat array"),
    ([SCAN, b"", None, 0, False], errors.BadRequest, "limit must be"),
    ([SHARD, 4, [STATS]], errors.BadRequest, "shard must be"),
    ([SHARD, 0, [GET, b"k"]], errors.BadRequest, "admin op"),
    ([SHARD, 0, [SNAPSHOT_READ, -1, None, 10, 100]], errors.BadRequest, "snapshot id"),
])
def test_invalid_commands_are_refused_with_the_reason(cmd, cls, why):
    with pytest.raises(Invalid) as exc:
        P.plan(cmd)
    assert exc.value.cls is cls and why in str(exc.value)


def test_ping_needs_no_shard_and_admin_ops_reach_every_shard():
    subops, finish = P.plan([PING])
    assert subops == [] and finish([]) is True
    subops, finish = P.plan([COMPACT])
    assert [s for s, _ in subops] == [0, 1, 2, 3]
    assert finish([True, False, True, True]) == [True, False, True, True]
    assert P.plan([SHARD, 2, [COMPACT]]) == ([(2, [COMPACT])], None)


def test_status_reports_the_routers_own_uptime_and_the_supervisors_view():
    subops, finish = Planner(RING, View(uptime=3.25)).plan([STATUS])
    assert [op for _, op in subops] == [[PING]] * 4
    down = ErrorReply(errors.ShardUnavailable.code, "shard 3 is not connected")
    st = finish([200, 201, 202, down])
    assert st["router"]["uptime"] == 3.25 and st["router"]["deaths"] == 2
    assert st["supervisor"] == 42
    assert st["shards"][0] == {"id": 0, "pid": 200, "alive": True, "error": None, "deaths": 0}
    assert st["shards"][3] == {"id": 3, "pid": 103, "alive": False,
                               "error": "shard 3 is not connected", "deaths": 3}
    import os
    assert st["router"]["id"] == 0 and st["router"]["pid"] == os.getpid()
    assert st["routers"] == [
        {"id": 0, "pid": os.getpid(), "endpoint": "ipc:///r", "alive": True, "deaths": 2},
        {"id": 1, "pid": 77, "endpoint": "ipc:///r.1", "alive": True, "deaths": 1},
        {"id": 2, "pid": None, "endpoint": "ipc:///r.2", "alive": False, "deaths": 3}]


def test_routers_is_answered_by_the_router_itself():
    from flin.protocol import ROUTERS
    subops, finish = P.plan([ROUTERS])
    assert subops == [] and finish([]) == ["ipc:///r", "ipc:///r.1", "ipc:///r.2"]
    with pytest.raises(Invalid):
        P.plan([ROUTERS, 1])


def test_stats_joins_the_shards_the_router_and_the_cache():
    subops, finish = P.plan([STATS])
    st = finish([{"keys": 1}, {"keys": 2}, ErrorReply(5, "gone"), {"keys": 4}])
    assert st["router"] == {"requests": 7}
    assert st["shards"][1] == {"keys": 2, "id": 1, "alive": True, "cache": {"hits": 1, "misses": 0}}
    assert st["shards"][2] == {"id": 2, "alive": False, "error": "gone"}


def test_scan_merge_is_ordered_and_stops_where_a_shard_may_hold_more():
    # shard 0 has more after b"m"; shard 1 is done: nothing past b"m" may be returned
    results = [[[b"a", b"f", b"m"], b"m"], [[b"b", b"n", b"z"], None]]
    items, cursor = _merge_scan(results, 10, False)
    assert items == [b"a", b"b", b"f", b"m"] and cursor == b"m"
    # the limit cuts first: the cursor is the last key returned
    items, cursor = _merge_scan(results, 2, False)
    assert items == [b"a", b"b"] and cursor == b"b"
    # every shard done: the walk ends
    assert _merge_scan([[[b"a"], None], [[b"b"], None]], 10, False) == [[b"a", b"b"], None]


def test_scan_merge_with_values_and_errors():
    results = [[[b"a", b"1", b"c", b"3"], None], [[b"b", b"2"], None]]
    assert _merge_scan(results, 10, True) == [[[b"a", b"1"], [b"b", b"2"], [b"c", b"3"]], None]
    err = ErrorReply(errors.StorageError.code, "disk")
    assert _merge_scan([results[0], err], 10, True) == err


def test_scan_asks_each_shard_for_a_share_of_the_page():
    subops, _ = P.plan([SCAN, b"p:", None, 100, False])
    assert len(subops) == 4
    share = protocol.MAX_REPLY // 4              # of the bytes too
    assert all(op == [SCAN, b"p:", None, 50, False, share, 1] for _, op in subops)   # epoch 1


def test_scan_page_stops_near_the_reply_limit_in_bytes():
    big = b"v" * (protocol.MAX_REPLY // 2)
    results = [[[b"a", big, b"c", big], b"c"], [[b"b", big, b"d", b"small"], None]]
    items, cursor = _merge_scan(results, 10, True)
    assert [k for k, _ in items] == [b"a", b"b"] and cursor == b"b"   # the next page resumes there


def test_set_nx_is_planned_like_set():
    cmd = [SET, b"k", b"v", 1000, NX]
    assert P.plan(cmd) == ([(RING.shard(b"k"), cmd)], None)
