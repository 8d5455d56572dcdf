"""The worker's record of which keys each router's cache may hold
(``shardworker.tracking``): notices go to those routers only, never to the
writer, and the record stays bounded."""
from flin import protocol
from flin.protocol import DEL, GET, MSET, SET
from flin.shardworker import tracking
from flin.shardworker.tracking import Tracker


def notices(tracker, ops, results, origins):
    """Run one segment whose op i came from router origins[i]."""
    spans = [(o, i, i + 1) for i, o in enumerate(origins)]
    return {r: protocol.decode(p)[1] for r, p in tracker.segment(ops, results, spans, 0, len(ops))}


def test_a_write_is_told_only_to_routers_that_filled_the_key():
    t = Tracker(3)
    assert notices(t, [[GET, b"k", 1], [GET, b"k", 1]], [[b"v", 0], [b"v", 0]], [1, 2]) == {}
    assert notices(t, [[SET, b"k", b"w", None, 0]], [None], [0]) == {1: [b"k"], 2: [b"k"]}
    assert notices(t, [[SET, b"k", b"x", None, 0]], [None], [0]) == {}      # told once
    assert notices(t, [[SET, b"other", b"x", None, 0]], [None], [0]) == {}  # never filled


def test_the_writer_is_not_told_and_a_plain_get_or_a_miss_records_nothing():
    t = Tracker(2)
    notices(t, [[GET, b"a", 1], [GET, b"b"], [GET, b"c", 1]], [[b"v", 0], b"v", None], [1, 1, 1])
    assert notices(t, [[DEL, [b"a", b"b", b"c"]]], [3], [1]) == {}
    notices(t, [[GET, b"a", 1]], [[b"v", 0]], [1])
    assert notices(t, [[MSET, [b"a", b"1", b"z", b"2"], None]], [None], [0]) == {1: [b"a"]}


def test_a_fill_and_a_write_in_one_segment_are_told_whatever_their_order():
    t = Tracker(2)
    got = notices(t, [[SET, b"k", b"w", None, 0], [GET, b"k", 1]], [None, [b"w", 0]], [0, 1])
    assert got == {1: [b"k"]}


def test_the_record_is_bounded_and_what_it_lets_go_is_told():
    t = Tracker(2)
    n = tracking._MAX_KEYS + 1
    ops = [[GET, b"key:%d" % i, 1] for i in range(n)]
    got = notices(t, ops, [[b"v", 0]] * n, [1] * n)
    assert len(got[1]) == n // 4 + 1 and got[1][0] == b"key:0"
    assert len(t.keys[1]) == n - len(got[1])
    t.reset(1)
    assert t.keys[1] == {} and t.bytes[1] == 0
    big = [[GET, b"x" * 60_000 + b"%d" % i, 1] for i in range(5)]
    got = notices(t, big, [[b"v", 0]] * 5, [1] * 5)
    assert got and t.bytes[1] <= tracking._MAX_BYTES
