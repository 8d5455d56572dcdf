"""Figures: the router's own counters, latency histograms, and the ``flin stats`` table.

The router keeps, per request, one ``time.monotonic()`` at arrival and one at
reply, and adds the difference to a ``Histogram`` of its kind (the command's
opcode, or ``pipeline`` for a request of several commands). A histogram is a
list of counts in log buckets: 4 per power of two of microseconds, so a
percentile is known to within 25% and an observation costs one list
increment. Shards count their own ops (``flin.admin``); ``STATS`` joins both.
"""
from __future__ import annotations

import os
import time
from typing import Any

from . import errors
from .protocol import OP_NAMES

_NBUCKETS = 144            # up to 2**37 us (~38 hours); longer lands in the last
PIPELINE = -1              # the "kind" of a request holding several commands
HOT_FACTOR = 3.0           # a shard with this many times the mean load is hot
HOT_MIN_OPS = 100          # ... and at least this many ops (in the window shown)
_QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))
# not a shard's load: heartbeats and admin ops (every data op counts, a batch op as one)
_NOT_LOAD = frozenset(("ping", "stats", "status", "compact", "snapshot_open", "snapshot_read",
                       "snapshot_close"))


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
        self.counts = [0] * _NBUCKETS
        self.total = 0.0

    def add(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        if us < 8:
            i = us if us > 0 else 0
        else:
            b = us.bit_length()
            i = (b << 2) - 8 + ((us >> (b - 3)) & 3)   # 8 + 4 * (b - 4) + the next 2 bits
            if i >= _NBUCKETS:
                i = _NBUCKETS - 1
        self.counts[i] += 1
        self.total += seconds

    def summary(self) -> dict:
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


def request_kind(cmds: list) -> int:
    """The latency histogram of a request: its command's opcode, or PIPELINE."""
    if len(cmds) == 1:
        c = cmds[0]
        if type(c) is list and c and type(c[0]) is int and c[0] in OP_NAMES:
            return c[0]
    return PIPELINE


class RouterStats:
    """What the router counts; its hot path touches ``inflight``, ``errors``
    and ``latency`` directly."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.inflight = 0                       # requests received, not yet answered
        self.errors: dict[int, int] = {}        # error code -> errors answered
        self.latency: dict[int, Histogram] = {}

    def histogram(self, op: int) -> Histogram:
        h = self.latency.get(op)
        if h is None:
            h = self.latency[op] = Histogram()
        return h


def _code_name(code: int) -> str:
    return type(errors.error_for_code(code, "")).__name__


def router_snapshot(router: Any) -> dict:
    """The router's figures, for STATS (reads the router's state, changes nothing)."""
    st: RouterStats = router.stats
    queues = []
    for s in range(router.ring.shards):
        batches = router.inflight[s]
        queues.append({"queued": len(router.out_ops[s]), "batches": len(batches),
                       "in_flight": sum(len(sinks) for sinks, _ in batches.values()),
                       "state": router.state[s]})
    latency = {("pipeline" if op == PIPELINE else OP_NAMES.get(op, str(op))): h.summary()
               for op, h in st.latency.items()}
    return {"pid": os.getpid(), "uptime_s": time.monotonic() - st.started,
            "requests": router.counts["requests"], "in_flight": st.inflight,
            "dropped_replies": router.counts["dropped_replies"],
            "errors": {_code_name(c): n for c, n in st.errors.items()},
            "queues": queues, "latency": latency, "ring": router.ring.params(),
            "read_cache": None if router.cache is None else router.cache.stats()}


# -- the terminal view ---------------------------------------------------------------
def load(shard: dict) -> int:
    """A shard's data ops (its load), from its ``ops`` counts."""
    return sum(n for name, n in (shard.get("ops") or {}).items() if name not in _NOT_LOAD)


def hot_shards(loads: dict[int, int]) -> set[int]:
    """Shards whose load is far above the mean (``HOT_FACTOR``, ``HOT_MIN_OPS``)."""
    if not loads:
        return set()
    mean = sum(loads.values()) / len(loads)
    return {s for s, n in loads.items() if n >= HOT_MIN_OPS and n > HOT_FACTOR * mean}


def _num(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return "%.1f%s%s" % (n / div, suffix, unit)
    return ("%d%s" % (n, unit)) if float(n).is_integer() else ("%.1f%s" % (n, unit))


def _ms(x: float | None) -> str:
    return "-" if x is None else ("%.3g" % x)


def render(st: dict, prev: dict | None = None, interval: float | None = None) -> str:
    """The ``flin stats`` table. With ``prev`` (the snapshot ``interval`` s
    before), counts become rates and latencies cover that window only."""
    r = st["router"]
    rate = prev is not None and interval
    lines = []
    errs = ", ".join("%s %d" % kv for kv in sorted(r["errors"].items())) or "none"
    lines.append("router  pid %d  up %s  requests %s  in flight %d  errors: %s"
                 % (r["pid"], _duration(r["uptime_s"]), _num(r["requests"]), r["in_flight"], errs))
    if rate:
        lines.append("        %s requests/s over the last %.1fs"
                     % (_num((r["requests"] - prev["router"]["requests"]) / interval), interval))
    lines.append("")
    lines.append("%-14s %9s %9s %9s %9s %9s %9s" % (
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"))
    before = (prev or {}).get("router", {}).get("latency", {})
    for op, h in sorted(r["latency"].items()):
        b = delta_buckets(h["buckets"], before.get(op, {}).get("buckets")) if rate else h["buckets"]
        n = sum(b.values())
        if not n:
            continue
        p = percentiles(b)
        lines.append("%-14s %9s %9s %9s %9s %9s %9s" % (
            op, _num(n), _ms(p["p50_ms"]), _ms(p["p90_ms"]), _ms(p["p99_ms"]),
            _ms(p["p999_ms"]), _ms(p["max_ms"])))
    lines.append("")
    shards = st["shards"]
    old = {s["id"]: s for s in (prev or {}).get("shards", [])}
    loads = {}
    for s in shards:
        if s.get("alive"):
            loads[s["id"]] = load(s) - (load(old[s["id"]]) if rate and s["id"] in old else 0)
    hot = hot_shards(loads)
    lines.append("%5s %8s %9s %7s %9s %9s %7s %6s  %s" % (
        "shard", "pid", "ops/s" if rate else "ops", "errors", "keys", "disk", "cache",
        "queue", "notes"))
    for s in shards:
        q = r["queues"][s["id"]] if s["id"] < len(r["queues"]) else {}
        depth = q.get("queued", 0) + q.get("in_flight", 0)
        if not s.get("alive"):
            lines.append("%5d %8s %9s %7s %9s %9s %7s %6d  DOWN: %s" % (
                s["id"], "-", "-", "-", "-", "-", "-", depth, s.get("error")))
            continue
        ops = loads[s["id"]] / interval if rate else loads[s["id"]]
        cache = s.get("cache")
        looked = cache and cache["hits"] + cache["misses"]
        hit = "%d%%" % (100 * cache["hits"] / looked) if looked else "-"
        keys = ("~" if s["keys_estimated"] else "") + _num(s["keys"])
        notes = []
        if s["id"] in hot:
            notes.append("HOT (%.1fx mean)" % (loads[s["id"]] / (sum(loads.values()) / len(loads))))
        comp = s.get("compaction") or {}
        if comp.get("running"):
            notes.append("compacting %.0fs" % comp.get("elapsed_s", 0))
        if s.get("snapshots"):
            notes.append("%d snapshot(s)" % s["snapshots"])
        lines.append("%5d %8d %9s %7s %9s %9s %7s %6d  %s" % (
            s["id"], s["pid"], _num(ops), _num(sum(s["errors"].values())), keys,
            _num(s["disk_bytes"], "B"), hit, depth, ", ".join(notes)))
    total_keys = sum(s["keys"] for s in shards if s.get("alive"))
    approx = any(s.get("keys_estimated") for s in shards if s.get("alive"))
    lines.append("total keys %s%s (an estimate where marked ~; expired keys not yet swept "
                 "count)" % ("~" if approx else "", _num(total_keys)))
    return "\n".join(lines)


def _duration(s: float) -> str:
    s = int(s)
    if s < 3600:
        return "%dm%02ds" % divmod(s, 60)
    h, s = divmod(s, 3600)
    return "%dh%02dm" % (h, s // 60)
