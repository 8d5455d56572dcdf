"""Latency histograms and percentiles, hot shards: the STATS arithmetic."""
from __future__ import annotations

from flin.figures import (
    NBUCKETS, Histogram, bucket_low, delta_buckets, hot_shards, load, percentiles,
)


def test_every_microsecond_lands_in_the_bucket_whose_range_holds_it():
    for us in list(range(0, 5000)) + [10**6, 123_456_789]:
        h = Histogram()
        h.add(us / 1e6)
        (i,) = [i for i, c in enumerate(h.counts) if c]
        assert bucket_low(i) <= us < bucket_low(i + 1), (us, i)


def test_buckets_are_within_25_percent_and_the_last_takes_the_rest():
    for i in range(8, NBUCKETS - 1):
        assert bucket_low(i + 1) - bucket_low(i) <= 0.25 * bucket_low(i) + 1e-9
    h = Histogram()
    h.add(10**9)                                  # ~11.6 days: past the last bucket
    assert h.counts[-1] == 1


def test_percentiles_are_conservative_upper_bounds():
    h = Histogram()
    for us in range(1, 1001):                     # 1 .. 1000 us, uniform
        h.add(us / 1e6)
    s = h.summary()
    assert s["count"] == 1000
    assert 0.5 <= s["p50_ms"] <= 0.5 * 1.25 + 0.001
    assert 0.99 <= s["p99_ms"] <= 0.99 * 1.25 + 0.001
    assert s["max_ms"] >= 1.0
    assert abs(s["sum_s"] - sum(range(1, 1001)) / 1e6) < 1e-9
    assert percentiles({})["p50_ms"] is None


def test_delta_buckets_count_only_what_came_between():
    assert delta_buckets({1: 5, 2: 3}, {1: 5, 2: 1}) == {2: 2}
    assert delta_buckets({1: 5}, None) == {1: 5}


def test_hot_shards_need_both_the_factor_and_the_minimum():
    assert hot_shards({0: 1000, 1: 10, 2: 10, 3: 10}) == {0}
    assert hot_shards({0: 50, 1: 1, 2: 1, 3: 1}) == set()     # under HOT_MIN_OPS
    assert hot_shards({0: 100, 1: 100}) == set()
    assert hot_shards({}) == set()


def test_a_shards_load_counts_data_ops_only():
    shard = {"ops": {"get": 5, "set": 3, "ping": 100, "stats": 9, "snapshot_read": 7, "scan": 1}}
    assert load(shard) == 9
