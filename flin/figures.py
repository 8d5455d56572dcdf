"""Reading the STATS document: latency histograms and which shards are hot.

The router records each request's latency in a ``Histogram`` of its kind
(the command's opcode, or ``pipeline`` for a request of several commands):
a list of counts in log buckets, 4 per power of two of microseconds, so a
percentile is known to within 25% and an observation costs one list
increment. STATS carries the sparse bucket counts; the CLI's table and the
Prometheus exporter turn them into percentiles here.
"""
from __future__ import annotations

from .protocol import DATA_OP_NAMES

NBUCKETS = 144             # up to 2**37 us (~38 hours); longer lands in the last
HOT_FACTOR = 3.0           # a shard with this many times the mean load is hot
HOT_MIN_OPS = 100          # ... and at least this many ops (in the window shown)
_QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def bucket_low(i: int) -> int:
    """Smallest microsecond value that lands in bucket ``i``."""
    if i < 8:
        return i
    b, sub = (i - 8) // 4 + 4, (i - 8) % 4
    return (4 + sub) << (b - 3)


class Histogram:
    """Latency counts in log buckets (see the module docstring)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.total = 0.0

    def add(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        if us < 8:
            i = us if us > 0 else 0
        else:
            b = us.bit_length()
            i = (b << 2) - 8 + ((us >> (b - 3)) & 3)   # 8 + 4 * (b - 4) + the next 2 bits
            if i >= NBUCKETS:
                i = NBUCKETS - 1
        self.counts[i] += 1
        self.total += seconds

    def summary(self) -> dict[str, object]:
        buckets = {i: c for i, c in enumerate(self.counts) if c}
        return {"count": sum(buckets.values()), "sum_s": self.total, "buckets": buckets,
                **percentiles(buckets)}


def percentiles(buckets: dict) -> dict:
    """p50/p90/p99/p999/max in ms from sparse bucket counts (each the bucket's
    upper bound: a conservative figure)."""
    items = sorted((int(i), c) for i, c in buckets.items() if c)
    n = sum(c for _, c in items)
    out: dict = {}
    if not n:
        return {name + "_ms": None for name, _ in _QUANTILES} | {"max_ms": None}
    for name, q in _QUANTILES:
        need, seen = q * n, 0
        for i, c in items:
            seen += c
            if seen >= need:
                out[name + "_ms"] = bucket_low(i + 1) / 1000.0
                break
    out["max_ms"] = bucket_low(items[-1][0] + 1) / 1000.0
    return out


def delta_buckets(now: dict, before: dict | None) -> dict:
    """Bucket counts observed between two snapshots."""
    if not before:
        return dict(now)
    return {i: c - before.get(i, 0) for i, c in now.items() if c - before.get(i, 0) > 0}


def load(shard: dict) -> int:
    """A shard's data ops (its load), from its ``ops`` counts."""
    return sum(n for name, n in (shard.get("ops") or {}).items() if name in DATA_OP_NAMES)


def hot_shards(loads: dict[int, int]) -> set[int]:
    """Shards whose load is far above the mean (``HOT_FACTOR``, ``HOT_MIN_OPS``)."""
    if not loads:
        return set()
    mean = sum(loads.values()) / len(loads)
    return {s for s, n in loads.items() if n >= HOT_MIN_OPS and n > HOT_FACTOR * mean}
