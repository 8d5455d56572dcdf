"""INFO's text, from Flin's STATS (the router's figures and every shard's):
the sections Redis tools read (server, clients, stats, keyspace), in
Redis's ``field:value`` lines, and a ``flin`` section with what only Flin has."""
from __future__ import annotations

import os
import platform
from typing import Any

from ... import __version__

REDIS_VERSION = "7.0.0"        # the Redis whose commands Flin answers like (INFO, HELLO)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pids: list) -> int:
    """Resident memory of these processes together (those still running)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def _human(n: int) -> str:
    """Bytes as Redis's ``used_memory_human`` writes them (``1.50M``)."""
    if n < 1024:
        return "%dB" % n
    x = n / 1024.0
    for unit in "KM":
        if x < 1024:
            return "%.2f%s" % (x, unit)
        x /= 1024
    return "%.2fG" % x


def info_text(stats: dict, wanted: set, port: int) -> str:
    """The sections in ``wanted`` (``default``/``all``/``everything``: all of them)."""
    router = stats.get("router", {})
    shards = stats.get("shards", [])
    resp = router.get("resp") or {}
    cache = router.get("read_cache") or {}
    alive = [sh for sh in shards if sh.get("alive")]
    keys = sum(sh.get("keys", 0) for sh in alive)
    ops = sum(n for sh in alive for n in (sh.get("ops") or {}).values())
    uptime = int(router.get("uptime_s", 0))
    out: list[str] = []

    def section(name: str, fields: list[tuple[str, Any]]) -> None:
        if wanted & {"default", "all", "everything", name}:
            out.append("# %s" % name.capitalize())
            out.extend("%s:%s" % kv for kv in fields)
            out.append("")

    section("server", [
        ("redis_version", REDIS_VERSION), ("flin_version", __version__),
        ("redis_mode", "standalone"), ("os", "%s %s %s" % (platform.system(), platform.release(),
                                                          platform.machine())),
        ("arch_bits", 64), ("process_id", router.get("pid", os.getpid())),
        ("tcp_port", port), ("uptime_in_seconds", uptime), ("uptime_in_days", uptime // 86400),
        ("router_id", router.get("id", 0))])
    section("clients", [
        ("connected_clients", resp.get("connections", 0)),
        ("maxclients", resp.get("max_clients", 0)),
        ("zmq_clients", (router.get("clients") or {}).get("connected", 0)),
        ("blocked_clients", 0)])
    used = rss_bytes([router.get("pid", os.getpid())] + [sh["pid"] for sh in alive if sh.get("pid")])
    section("memory", [       # Flin's: resident memory of this router and every live shard
        ("used_memory", used), ("used_memory_human", _human(used)), ("used_memory_rss", used),
        ("flin_memory_processes", 1 + len(alive))])
    section("stats", [
        ("total_connections_received", resp.get("accepted", 0)),
        ("total_commands_processed", resp.get("commands", 0)),
        ("rejected_connections", resp.get("rejected", 0)),
        ("total_net_input_bytes", resp.get("bytes_in", 0)),
        ("total_net_output_bytes", resp.get("bytes_out", 0)),
        ("protocol_errors", resp.get("protocol_errors", 0)),
        ("keyspace_hits", cache.get("hits", 0)), ("keyspace_misses", cache.get("misses", 0)),
        ("shard_ops", ops)])
    if wanted & {"default", "all", "everything", "keyspace"}:
        out.append("# Keyspace")
        if keys:
            out.append("db0:keys=%d" % keys)   # expiring keys are not counted
        out.append("")
    section("flin", [
        ("shards", len(shards)), ("shards_alive", len(alive)),
        ("keys_estimated", int(any(sh.get("keys_estimated") for sh in alive))),
        ("disk_bytes", sum(sh.get("disk_bytes", 0) for sh in alive)),
        ("requests", router.get("requests", 0)), ("in_flight", router.get("in_flight", 0))])
    return "\r\n".join(out)
