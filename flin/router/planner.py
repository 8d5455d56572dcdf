"""How each client command splits into shard ops and how their answers combine.

``Planner(ring, view).plan(cmd)`` validates one command (before any work is
done) and returns ``(subops, finish)``: the ``(shard, op)`` pairs to send,
and a function that turns their answers, in the same order, into the
command's result (``None`` when the one answer is the result as it is).
Pure: no I/O. STATUS and STATS also report what the router knows of itself
and the supervisor: the router passes that in as a ``ClusterView``.
"""
from __future__ import annotations

import heapq
import os
from typing import Any, Callable

from .. import errors
from ..protocol import (
    ADMIN_OPS, CAS, COMPACT, DEL, EXISTS, EXPIRE, GET, GET_OLD, GETDEL, INCR, INT64_MAX, INT64_MIN,
    KEEP_TTL, MAX_ITEMS, MAX_KEY, MAX_REPLY, MAX_SCAN_LIMIT, MAX_SNAPSHOT_BYTES, MAX_TTL_MS,
    MAX_VALUE, MGET, MOVE_ABORT, MOVE_BEGIN, MOVE_DIRTY, MOVE_FENCE, MOVE_IMPORT, MOVE_READ,
    MOVE_SWITCH, MSET, NX,
    NODE, OP_NAMES, PERSIST, PING, REPLICA, ROUTERS, SCAN, SET, SHARD, SNAPSHOT_CLOSE,
    SNAPSHOT_READ, STATS, STATUS, TTL, XX, ErrorReply,
)
from ..ring import Ring
from .view import ClusterView

Finish = Callable[[list], Any]
Plan = tuple[list, "Finish | None"]


class Invalid(Exception):
    """A command that fails validation; ``cls`` is the error to answer with."""

    def __init__(self, message: str, cls: type[errors.ServerError] = errors.BadRequest):
        super().__init__(message)
        self.cls = cls


def _key(k: Any) -> bytes:
    if type(k) is not bytes:
        raise Invalid("keys must be msgpack bin, got %s" % type(k).__name__)
    if len(k) > MAX_KEY:
        raise Invalid("key of %d bytes exceeds the %d-byte limit" % (len(k), MAX_KEY), errors.TooLarge)
    return k


def _value(v: Any) -> bytes:
    if type(v) is not bytes:
        raise Invalid("values must be msgpack bin, got %s" % type(v).__name__)
    if len(v) > MAX_VALUE:
        raise Invalid("value of %d bytes exceeds the %d-byte limit" % (len(v), MAX_VALUE), errors.TooLarge)
    return v


def _ttl(t: Any, optional: bool = True) -> int | None:
    if t is None and optional:
        return None
    if type(t) is not int or not 0 < t <= MAX_TTL_MS:
        raise Invalid("ttl must be an integer number of ms in 1..%d" % MAX_TTL_MS)
    return t


def _uid(u: Any) -> bytes | None:
    if u is not None and (type(u) is not bytes or not 1 <= len(u) <= 64):
        raise Invalid("request uid must be 1..64 bytes or nil")
    return u


def _keys(ks: Any) -> list:
    if type(ks) is not list:
        raise Invalid("expected an array of keys")
    if len(ks) > MAX_ITEMS:
        raise Invalid("more than %d keys" % MAX_ITEMS, errors.TooLarge)
    for k in ks:
        _key(k)
    return ks


def _args(cmd: list, n: int) -> None:
    if len(cmd) != n:
        raise Invalid("%s takes %d arguments, got %d"
                      % (OP_NAMES.get(cmd[0], str(cmd[0])).upper(), n - 1, len(cmd) - 1))


def first_error(results: list) -> ErrorReply | None:
    return next((r for r in results if type(r) is ErrorReply), None)


def _all_or_error(results: list) -> Any:
    return first_error(results) or results


def _sum_or_error(results: list) -> Any:
    return first_error(results) or sum(results)


# -- one planner per opcode --------------------------------------------------------
def _plan_ping(ring: Ring, cmd: list) -> Plan:
    return [], lambda _: True


def _plan_get(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 2)
    return [(ring.shard(_key(cmd[1])), cmd)], None


_plan_exists = _plan_persist = _plan_ttl = _plan_getdel = _plan_get


def _plan_set(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 5)
    _, key, value, ttl, flags = cmd
    _value(value)
    _ttl(ttl)
    if (type(flags) is not int or not 0 <= flags <= NX | XX | GET_OLD | KEEP_TTL  # not 1.0
            or flags & (NX | XX) == NX | XX or (flags & KEEP_TTL and ttl is not None)):
        raise Invalid("flags must be 0, NX (1) or XX (2), with GET_OLD (4) and KEEP_TTL (8, no ttl)")
    return [(ring.shard(_key(key)), cmd)], None


def _group(ring: Ring, keys: list) -> dict[int, tuple[list, list]]:
    """Keys by shard: {shard: (keys, their positions in ``keys``)}."""
    shard = ring.shard
    groups: dict[int, tuple[list, list]] = {}
    for i, k in enumerate(keys):
        s = shard(k)
        if (g := groups.get(s)) is None:
            groups[s] = g = ([], [])
        g[0].append(k)
        g[1].append(i)
    return groups


def _plan_del(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 2)
    groups = _group(ring, _keys(cmd[1]))
    return [(s, [DEL, ks]) for s, (ks, _) in groups.items()], _sum_or_error


def _plan_mget(ring: Ring, cmd: list) -> Plan:
    """One MGET per shard; the answers are put back in the caller's order."""
    _args(cmd, 2)
    keys = _keys(cmd[1])
    groups = _group(ring, keys)
    positions = [pos for _, pos in groups.values()]

    def finish(results: list) -> Any:
        err = first_error(results)
        if err:
            return err
        out: list = [None] * len(keys)
        for pos, values in zip(positions, results):
            for i, v in zip(pos, values):
                out[i] = v
        return out
    return [(s, [MGET, ks]) for s, (ks, _) in groups.items()], finish


def _plan_mset(ring: Ring, cmd: list) -> Plan:
    """One MSET per shard: each shard's part is one atomic write batch."""
    _args(cmd, 3)
    flat, ttl = cmd[1], _ttl(cmd[2])
    if type(flat) is not list or len(flat) % 2:
        raise Invalid("MSET takes a flat array [key, value, ...]")
    if len(flat) > 2 * MAX_ITEMS:
        raise Invalid("more than %d keys" % MAX_ITEMS, errors.TooLarge)
    shard = ring.shard
    parts: dict[int, list] = {}
    for i in range(0, len(flat), 2):
        k, v = _key(flat[i]), _value(flat[i + 1])
        s = shard(k)
        part = parts.get(s)
        if part is None:
            parts[s] = part = []
        part.append(k)
        part.append(v)
    return [(s, [MSET, part, ttl]) for s, part in parts.items()], first_error


def _plan_incr(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 4)
    if type(cmd[2]) is not int or not INT64_MIN <= cmd[2] <= INT64_MAX:
        raise Invalid("increment must be a signed 64-bit integer")
    _uid(cmd[3])
    return [(ring.shard(_key(cmd[1])), cmd)], None


def _plan_expire(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 3)
    if type(cmd[2]) is not int or not INT64_MIN <= cmd[2] <= MAX_TTL_MS:
        raise Invalid("ttl must be an integer number of ms")   # (<= 0: delete)
    return [(ring.shard(_key(cmd[1])), cmd)], None


def _plan_cas(ring: Ring, cmd: list) -> Plan:
    _args(cmd, 5)
    if cmd[2] is not None:
        _value(cmd[2])
    _value(cmd[3])
    _uid(cmd[4])
    return [(ring.shard(_key(cmd[1])), cmd)], None


def _plan_scan(ring: Ring, cmd: list, epoch: int = 1) -> Plan:
    """Ask every shard for a sorted slice; merge; stop at the lowest point any
    shard with more keys reached, so that no key can be skipped or repeated.
    Each part carries the epoch of the ring it was planned by: a shard on
    another answers ``Moved`` (a reshard switched in between; the page is
    planned again)."""
    _args(cmd, 5)
    _, prefix, start_after, limit, values = cmd
    _key(prefix)
    if start_after is not None:
        _key(start_after)
    if type(limit) is not int or not 1 <= limit <= MAX_SCAN_LIMIT:
        raise Invalid("limit must be in 1..%d" % MAX_SCAN_LIMIT)
    if type(values) is not bool:
        raise Invalid("values must be a bool")
    per_shard = min(limit, max(16, -(-2 * limit // ring.shards)))
    # each shard's part, and the page, stop near MAX_REPLY bytes (after one entry)
    op = [SCAN, prefix, start_after, per_shard, values, max(MAX_REPLY // ring.shards, 1 << 20),
          epoch]
    return [(s, op) for s in range(ring.shards)], lambda rs: _merge_scan(rs, limit, values)


def _merge_scan(results: list, limit: int, values: bool) -> Any:
    """The page: merged in key order, up to ``limit`` items and about
    ``MAX_REPLY`` bytes, and never past the lowest key a shard with more
    stopped at (its ``last``)."""
    err = first_error(results)
    if err:
        return err
    streams = []
    cutoff = None
    for flat, last in results:
        if values:
            it = iter(flat)
            streams.append(list(zip(it, it)))
        else:
            streams.append(flat)
        if last is not None and (cutoff is None or last < cutoff):
            cutoff = last
    items: list = []
    size = 0
    merged = heapq.merge(*streams, key=(lambda kv: kv[0]) if values else None)
    for item in merged:
        key = item[0] if values else item
        if cutoff is not None and key > cutoff:
            break
        if len(items) == limit or size >= MAX_REPLY:
            return [items, items[-1][0] if values else items[-1]]
        items.append(list(item) if values else item)
        size += len(key) + len(item[1]) if values else len(key)
    return [items, cutoff]


def _plan_status(slots: int, view: ClusterView) -> Plan:
    def finish(results: list) -> dict:
        sup = view.supervisor_state()
        sup_shards = sup.get("shards") or [{}] * len(results)
        shards = []
        for s, r in enumerate(results):
            alive = type(r) is not ErrorReply
            known = sup_shards[s] if s < len(sup_shards) else {}
            shards.append({"id": s, "pid": r if alive else known.get("pid"), "alive": alive,
                           "error": None if alive else (known.get("broken") or r.message),
                           "deaths": known.get("deaths", 0)})
        me = view.me()
        routers = []
        known_routers = sup.get("routers") or []
        cluster = view.cluster()
        for i, endpoint in enumerate(view.endpoints()):
            if i >= len(known_routers) and cluster is not None:   # another node's
                routers.append({"id": i, "pid": None, "endpoint": endpoint, "deaths": 0,
                                "alive": any(endpoint in (n.get("routers") or [])
                                             for n in cluster["nodes"].values()
                                             if n.get("alive"))})
                continue
            known = known_routers[i] if i < len(known_routers) else {}
            pid = os.getpid() if i == me else known.get("pid")
            routers.append({"id": i, "pid": pid, "endpoint": endpoint,
                            "alive": i == me or (pid is not None and view.alive(pid)),
                            "deaths": known.get("deaths", 0)})
        router = {**routers[me], "uptime": view.uptime()}
        out = {"router": router, "routers": routers, "supervisor": sup.get("supervisor"),
               "shards": shards, "resp": view.resp(), "epoch": view.epoch(),
               "reshard": sup.get("reshard")}
        if cluster is not None:
            out["cluster"] = cluster
        return out
    return [(s, [PING]) for s in range(slots)], finish


def _plan_routers(view: ClusterView, cmd: list) -> Plan:   # from this router, no shard
    _args(cmd, 1)
    return [], lambda _, endpoints=view.endpoints(): list(endpoints)


def _plan_stats(slots: int, view: ClusterView, cmd: list) -> Plan:
    _args(cmd, 1)

    def finish(results: list) -> dict:
        known = view.supervisor_state().get("shards") or []
        shards = []
        for s, r in enumerate(results):
            if type(r) is dict:
                shards.append({**r, "id": s, "alive": True, "cache": view.cache_stats(s)})
            else:
                why = (known[s].get("broken") if s < len(known) else None) or getattr(r, "message", r)
                shards.append({"id": s, "alive": False, "error": why})
        return {"router": view.router_stats(), "shards": shards}
    return [(s, cmd) for s in range(slots)], finish


def _plan_compact(slots: int, cmd: list) -> Plan:
    _args(cmd, 1)
    return [(s, cmd) for s in range(slots)], _all_or_error


def _plan_shard(slots: int, cmd: list) -> Plan:
    """[SHARD, shard_id, admin_op]: one shard, no hashing, admin ops only."""
    _args(cmd, 3)
    _, shard, op = cmd
    if type(shard) is not int or not 0 <= shard < slots:
        raise Invalid("shard must be an integer in 0..%d" % (slots - 1))
    if type(op) is not list or not op or type(op[0]) is not int or op[0] not in ADMIN_OPS:
        raise Invalid("SHARD takes an admin op: PING, STATS, COMPACT or SNAPSHOT_*")
    if op[0] == SNAPSHOT_READ:
        _args(op, 5)
        _, sid, after, limit, max_bytes = op
        if after is not None and (type(after) is not bytes or len(after) > MAX_KEY + 64):
            raise Invalid("after must be a raw key (bin) or nil")
        if type(limit) is not int or not 1 <= limit <= MAX_SCAN_LIMIT:
            raise Invalid("limit must be in 1..%d" % MAX_SCAN_LIMIT)
        if type(max_bytes) is not int or not 1 <= max_bytes <= MAX_SNAPSHOT_BYTES:
            raise Invalid("max_bytes must be in 1..%d" % MAX_SNAPSHOT_BYTES)
    elif op[0] == SNAPSHOT_CLOSE:
        _args(op, 2)
    else:
        n = _MOVE_ARGS.get(op[0], 1)   # the movers' ops (their shards check the rest)
        extra = _MOVE_EXTRA.get(op[0], 0)   # a backward flag, a whole-shard move's id
        if not n <= len(op) <= n + extra:
            _args(op, n)
    if op[0] in (SNAPSHOT_READ, SNAPSHOT_CLOSE) and (type(op[1]) is not int or op[1] < 0):
        raise Invalid("a snapshot id is a non-negative integer")
    return [(shard, op)], None


_MOVE_ARGS = {MOVE_BEGIN: 4, MOVE_READ: 4, MOVE_DIRTY: 3, MOVE_IMPORT: 2, MOVE_SWITCH: 3}
_MOVE_EXTRA = {MOVE_READ: 2, MOVE_DIRTY: 1, MOVE_FENCE: 1, MOVE_SWITCH: 1, MOVE_ABORT: 1}
_REPLICA_READS = ([GET], [MGET], [EXISTS], [TTL])

# the planners that need only the ring; STATUS and STATS also need the view
_PLANNERS: dict[int, Callable[[Ring, list], Plan]] = {
    PING: _plan_ping, GET: _plan_get, SET: _plan_set, DEL: _plan_del,
    EXISTS: _plan_exists, MGET: _plan_mget, MSET: _plan_mset, INCR: _plan_incr,
    EXPIRE: _plan_expire, PERSIST: _plan_persist, TTL: _plan_ttl, CAS: _plan_cas,
    GETDEL: _plan_getdel,
}


class Planner:
    """Plans commands for one ring; ``view`` answers for STATUS and STATS."""

    def __init__(self, ring: Ring, view: ClusterView) -> None:
        self.ring, self.view = ring, view
        self.slots = ring.shards   # shards STATUS, STATS, COMPACT and SHARD reach (a reshard: both rings')
        self.epoch = 1             # the ring's (``resharding.py``): SCAN's parts carry it
        self.pick: Callable[[int], int] = lambda s: s   # a copy's slot (``nodes.py``)

    def plan(self, cmd: Any) -> Plan:
        """Validate ``cmd`` and split it; raises ``Invalid`` with the reason."""
        if type(cmd) is not list or not cmd or type(cmd[0]) is not int:
            raise Invalid("a command is an array that starts with an integer opcode")
        planner = _PLANNERS.get(cmd[0])
        if planner is not None:
            return planner(self.ring, cmd)
        if cmd[0] == SCAN:
            return _plan_scan(self.ring, cmd, self.epoch)
        if cmd[0] == SHARD:
            return _plan_shard(self.slots, cmd)
        if cmd[0] == COMPACT:
            return _plan_compact(self.slots, cmd)
        if cmd[0] == STATUS:
            return _plan_status(self.slots, self.view)
        if cmd[0] == STATS:
            return _plan_stats(self.slots, self.view, cmd)
        if cmd[0] == ROUTERS:
            return _plan_routers(self.view, cmd)
        if cmd[0] == REPLICA:          # a read any copy of the shard may answer
            if len(cmd) != 2 or type(cmd[1]) is not list or cmd[1][:1] not in _REPLICA_READS:
                raise Invalid("REPLICA wraps one read: GET, MGET, EXISTS or TTL")
            subops, finish = self.plan(cmd[1])
            return [(self.pick(s), op) for s, op in subops], finish
        if cmd[0] == NODE:
            _args(cmd, 1)
            cluster = self.view.cluster()
            return [], lambda _: cluster
        raise Invalid("unknown command %d" % cmd[0])
