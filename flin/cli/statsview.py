"""The ``flin stats`` table: the STATS document as a person reads it."""
from __future__ import annotations

from ..figures import delta_buckets, hot_shards, load, percentiles


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
    rate = prev is not None and bool(interval)
    before_st: dict = prev or {}
    secs: float = interval or 1.0
    lines = []
    errs = ", ".join("%s %d" % kv for kv in sorted(r["errors"].items())) or "none"
    lines.append("router  pid %d  up %s  requests %s  in flight %d  errors: %s"
                 % (r["pid"], _duration(r["uptime_s"]), _num(r["requests"]), r["in_flight"], errs))
    if rate:
        lines.append("        %s requests/s over the last %.1fs"
                     % (_num((r["requests"] - before_st["router"]["requests"]) / secs), secs))
    m = r.get("reshard")
    if m:
        lines.append("resharding %s -> %s shards: %s, %s keys (%.1f MB) moved, %.1f MB/s%s"
                     % (m.get("from"), m.get("to"), m.get("state"), _num(m.get("keys", 0)),
                        m.get("bytes", 0) / 1e6, m.get("rate_mb_s", 0.0),
                        " (yielding to clients)" if m.get("yielding") else ""))
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
        ops = loads[s["id"]] / secs if rate else loads[s["id"]]
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
