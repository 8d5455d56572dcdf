"""Replicas of each shard, in etcd: where the copies live, who is primary.

Keys (``../shared/design/TOPOLOGY.md``, Patroni's model):

- the topology document's ``replicas`` (shard -> its nodes, the first the
  preferred primary) and ``acks`` (``majority`` or ``one``);
- ``/flin/<cluster>/primary/<shard>``: ``{"node", "term"}``, on the primary
  node's lease: the node's death (or a pause, or a cut, past its lease)
  removes it;
- ``/flin/<cluster>/term/<shard>``: the shard's last term, never leased;
- ``/flin/<cluster>/positions/<node>``: where the node's copies stand
  (``{shard: {"term", "seq", "role", "voter"}}``, each second, on its lease).

A replica becomes primary only through ``elect``: one etcd transaction that
checks the primary key is absent and the term is still the one it read, and
writes both, the term one higher. Which replica may try is the agent's
business (``election.py``); etcd picks one among those that do.
"""
from __future__ import annotations

import json
from typing import Any

from .etcd import Etcd
from .topology import Topology, TopologyError, Unchanged, root

def primary_prefix(cluster: str) -> bytes:
    return root(cluster) + b"primary/"


def primary_key(cluster: str, shard: int) -> bytes:
    return primary_prefix(cluster) + b"%d" % shard


def term_prefix(cluster: str) -> bytes:
    return root(cluster) + b"term/"


def term_key(cluster: str, shard: int) -> bytes:
    return term_prefix(cluster) + b"%d" % shard


def positions_prefix(cluster: str) -> bytes:
    return root(cluster) + b"positions/"


def needed(replicas: int, acks: str) -> int:
    """How many copies (the primary's included) a write must be on before
    it is acknowledged."""
    return 1 if acks == "one" else replicas // 2 + 1


def primaries(got: dict[bytes, tuple[bytes, int]], cluster: str) -> dict[int, dict[str, Any]]:
    """shard -> ``{"node", "term"}`` from a read of the cluster's keys."""
    prefix = primary_prefix(cluster)
    out = {}
    for key, (value, _lease) in got.items():
        if key.startswith(prefix):
            try:
                out[int(key[len(prefix):])] = json.loads(value)
            except ValueError:
                continue
    return out


def terms(got: dict[bytes, tuple[bytes, int]], cluster: str) -> dict[int, int]:
    """shard -> its last term, from a read of the cluster's keys."""
    prefix = term_prefix(cluster)
    out = {}
    for key, (value, _lease) in got.items():
        if key.startswith(prefix):
            try:
                out[int(key[len(prefix):])] = int(value)
            except ValueError:
                continue
    return out


def elect(etcd: Etcd, cluster: str, shard: int, node: str, lease: int,
          blind: int | None = None) -> int | None:
    """Make ``node`` the shard's primary if it has none: the new term, or
    None if another holds it (or won the same race). ``blind``: the term
    last seen, taken as is with no compare at all (tests break it so)."""
    value, term_rev = etcd.get(term_key(cluster, shard))
    term = (int(value or b"0") if blind is None else blind) + 1
    ok = etcd.swap_many(
        [] if blind is not None else
        [(primary_key(cluster, shard), 0), (term_key(cluster, shard), term_rev)],
        [(primary_key(cluster, shard), json.dumps({"node": node, "term": term}).encode(), lease),
         (term_key(cluster, shard), b"%d" % term, 0)])
    return term if ok else None


def set_replicas(etcd: Etcd, cluster: str, r: int) -> Topology:
    """Give every shard ``r`` copies: new followers on the members holding
    the fewest (each catches up from a copy of its primary), or fewer copies
    (followers dropped, never the primary)."""
    held, _ = etcd.get_prefix(primary_prefix(cluster))
    prim = primaries(held, cluster)

    def edit(t: Topology) -> None:
        if t.move is not None or t.plan:
            raise TopologyError("a shard move is in progress; change replicas after it")
        if not 1 <= r <= len(t.nodes):
            raise TopologyError("--replicas must be 1 to %d (the members)" % len(t.nodes))
        reps = t.replicas or [[p] if p else [] for p in t.placement]
        if all(len(rs) == r for rs in reps):
            raise Unchanged()
        load = {n: 0 for n in t.nodes}
        for rs in reps:
            for n in rs:
                load[n] = load.get(n, 0) + 1
        for s, rs in enumerate(reps):
            while len(rs) < r:
                new = min((m for m in t.nodes if m not in rs and m not in t.draining),
                          key=lambda m: (load[m], m), default=None)
                if new is None:
                    raise TopologyError("not enough members for %d replicas" % r)
                rs.append(new)
                load[new] += 1
            while len(rs) > r:
                keep = (prim.get(s) or {}).get("node") or rs[0]
                drop = next(n for n in reversed(rs) if n != keep)
                rs.remove(drop)
                load[drop] -= 1
        t.replicas = reps if r > 1 else []
        t.placement = [(prim.get(s) or {}).get("node") or rs[0] if rs else None
                       for s, rs in enumerate(reps)]
        t.epoch += 1
    return Topology.change(etcd, cluster, edit)


__all__ = ["elect", "needed", "positions_prefix", "term_prefix", "primaries", "primary_key", "set_replicas",
           "term_key", "terms"]
