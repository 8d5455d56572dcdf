"""The topology document of a cluster, in etcd, and its changes.

Keys (``../shared/design/TOPOLOGY.md``):

- ``/flin/<cluster>/topology``: one JSON document, changed only by
  compare-and-swap on its mod revision (``Topology.change``):
  ``shards`` (the ring: ``Ring(shards)``, the same on every node),
  ``epoch`` (bumped on every change of where a shard lives),
  ``placement`` (shard -> node name; None: not placed yet, the first node
  to start claims it), ``nodes`` (the members, in the order they joined),
  ``draining`` (members whose shards are being moved off), ``move`` (the
  shard move in progress: ``{"shard", "from", "to", "state", "tries"}``,
  state ``copy`` until the target holds every entry, then ``switch``: the
  placement already names the target) and ``plan`` (the moves queued after
  it, ``[shard, to, tries]``); ``error``: why the last move failed.
- ``/flin/<cluster>/nodes/<name>``: a node's registration, on its lease
  (gone when the node dies): where its routers listen for clients and for
  shard workers. ``flin cluster status`` and every router read it.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..config import MAX_SHARDS
from .etcd import Etcd, EtcdError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class TopologyError(Exception):
    """A topology change that cannot be made (the message says why)."""


class Unchanged(Exception):
    """Raised by an edit that finds its change made already (a write resent
    after a timeout may have landed): ``Topology.change`` writes nothing."""


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError("%s name %r: use letters, digits, '.', '_' or '-' (at most 63)"
                         % (kind, name))
    return name


def root(cluster: str) -> bytes:
    return ("/flin/%s/" % cluster).encode()


def topology_key(cluster: str) -> bytes:
    return root(cluster) + b"topology"


def nodes_prefix(cluster: str) -> bytes:
    return root(cluster) + b"nodes/"


def node_key(cluster: str, node: str) -> bytes:
    return nodes_prefix(cluster) + node.encode()


@dataclass
class Topology:
    cluster: str
    shards: int
    epoch: int = 1
    placement: list[str | None] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    draining: list[str] = field(default_factory=list)
    move: dict[str, Any] | None = None
    opened: list[bool] = field(default_factory=list)   # a node has opened the shard's LevelDB
    plan: list[list] = field(default_factory=list)
    error: str | None = None
    outcomes: dict[str, list] = field(default_factory=dict)   # shard -> [[move id, how], ...]
    version: int = 1
    # replicas (``replicas.py``): shard -> its nodes, [] for one copy; when a
    # write is acknowledged: "majority" of a shard's replicas, or "one"
    replicas: list[list[str]] = field(default_factory=list)
    acks: str = "majority"

    def __post_init__(self) -> None:
        self.opened = (list(self.opened) + [False] * self.shards)[:self.shards]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Topology":
        d = json.loads(data)
        if d.get("version") != 1:
            raise TopologyError("topology version %r: this Flin reads version 1"
                                % d.get("version"))
        return cls(**{k: d[k] for k in ("cluster", "shards", "epoch", "placement", "nodes",
                                        "draining", "move", "opened", "plan", "error",
                                        "outcomes", "version", "replicas", "acks") if k in d})

    def shards_of(self, node: str) -> list[int]:
        """The shards ``node`` holds: placed there, or (replicas) one of its copies."""
        if self.replicas:
            return [s for s, nodes in enumerate(self.replicas) if node in nodes]
        return [s for s, n in enumerate(self.placement) if n == node]

    # -- reading and changing it in etcd -------------------------------------------
    @classmethod
    def read(cls, etcd: Etcd, cluster: str) -> tuple["Topology", int]:
        """The cluster's topology and its revision; ``TopologyError`` if there is none."""
        data, rev = etcd.get(topology_key(cluster))
        if data is None:
            raise TopologyError("no cluster %r in etcd %s: create it with "
                                "`flin cluster create --etcd ... --cluster %s --shards N`"
                                % (cluster, ",".join(etcd.opts.urls), cluster))
        return cls.from_json(data), rev

    @classmethod
    def change(cls, etcd: Etcd, cluster: str,
               edit: Callable[["Topology"], None], attempts: int = 20) -> "Topology":
        """Apply ``edit`` to the current topology and write it by
        compare-and-swap, reading again when another writer came first.
        ``edit`` raises ``TopologyError`` to refuse."""
        for _ in range(attempts):
            topo, rev = cls.read(etcd, cluster)
            try:
                edit(topo)
            except Unchanged:
                return topo
            if etcd.swap(topology_key(cluster), topo.to_json(), rev):
                return topo
        raise TopologyError("the topology kept changing under %d attempts; try again" % attempts)


def create(etcd: Etcd, cluster: str, shards: int, nodes: list[str], replicas: int = 1,
           acks: str = "majority") -> Topology:
    """Write a new cluster's first topology: ``shards`` shards, placed round
    robin on ``nodes`` (none: the first node to start takes them all); with
    ``replicas`` > 1, each shard's copies on that many distinct nodes."""
    check_name("cluster", cluster)
    if not 1 <= shards <= MAX_SHARDS:
        raise TopologyError("--shards must be 1 to %d" % MAX_SHARDS)
    for n in nodes:
        check_name("node", n)
    if len(set(nodes)) != len(nodes):
        raise TopologyError("--nodes names a node twice")
    placement: list[str | None] = [nodes[s % len(nodes)] if nodes else None
                                   for s in range(shards)]
    if acks not in ("majority", "one"):
        raise TopologyError("--acks must be majority or one")
    if replicas < 1 or (replicas > 1 and len(nodes) < replicas):
        raise TopologyError("%d replicas need --nodes naming at least %d nodes (given: %s)"
                            % (replicas, replicas, ", ".join(nodes) or "none"))
    copies = [[nodes[(s + i) % len(nodes)] for i in range(replicas)]
              for s in range(shards)] if replicas > 1 else []
    topo = Topology(cluster=cluster, shards=shards, placement=placement, nodes=list(nodes),
                    replicas=copies, acks=acks)
    if not etcd.swap(topology_key(cluster), topo.to_json(), 0):
        raise TopologyError("cluster %r already exists in etcd %s"
                            % (cluster, ",".join(etcd.opts.urls)))
    return topo


def join(etcd: Etcd, cluster: str, node: str) -> Topology:
    """Make ``node`` a member, and give it every shard not placed yet."""
    def edit(t: Topology) -> None:
        if node not in t.nodes:
            t.nodes.append(node)
        if any(p is None for p in t.placement):
            t.placement = [node if p is None else p for p in t.placement]
            t.epoch += 1
    return Topology.change(etcd, cluster, edit)


MAX_TRIES = 5          # a move that failed this often is dropped from the plan
OUTCOMES_KEPT = 32     # ended moves remembered per shard (a fenced source may learn late)


def _load(t: Topology) -> dict[str, int]:
    """Shards per member that takes shards, counting the queued moves as done."""
    load = {n: 0 for n in t.nodes if n not in t.draining}
    for n in _after(t):
        if n in load:
            load[n] += 1
    return load


def _after(t: Topology) -> list[str | None]:
    """Where each shard will live once the move in progress and the plan are done."""
    where = list(t.placement)
    for shard, to in ([[t.move["shard"], t.move["to"]]] if t.move else []) + \
            [m[:2] for m in t.plan]:
        where[shard] = to
    return where


def start_next(t: Topology) -> None:
    """If no move runs, start the first queued one that still moves something."""
    while t.move is None and t.plan:
        shard, to, tries = t.plan.pop(0)
        if t.placement[shard] != to and to in t.nodes:
            t.move = {"shard": shard, "from": t.placement[shard], "to": to, "state": "copy",
                      "tries": tries, "id": uuid.uuid4().hex[:16]}


def ended(t: Topology, move: dict, how: str) -> None:
    """Record how a move ended (``done`` or ``failed``): a source fenced for
    it, restarted meanwhile, learns from this whether to hand off or go on."""
    kept = [o for o in t.outcomes.get(str(move["shard"])) or [] if o[0] != move.get("id")]
    t.outcomes[str(move["shard"])] = (kept + [[move.get("id"), how]])[-OUTCOMES_KEPT:]


def outcome(view_or_topology: dict, shard: int, move: str) -> str | None:
    """How move ``move`` of ``shard`` ended (``done``, ``failed``), if it did."""
    for mid, how in (view_or_topology.get("outcomes") or {}).get(str(shard)) or []:
        if mid == move:
            return str(how)
    return None


def _no_replicas(t: Topology, what: str) -> None:
    if t.replicas:
        raise TopologyError("cluster %s keeps %d replicas of each shard: %s moves whole "
                            "shards of one copy only; change where copies live with "
                            "`flin cluster replicas`" % (t.cluster, len(t.replicas[0]), what))


def add_node(etcd: Etcd, cluster: str, node: str) -> Topology:
    """Make ``node`` a member and queue the moves that even the shards out
    (from the most loaded members to it)."""
    check_name("node", node)

    def edit(t: Topology) -> None:
        _no_replicas(t, "add-node")
        if node in t.draining:
            t.draining.remove(node)
        if node not in t.nodes:
            t.nodes.append(node)
        load = _load(t)
        where = _after(t)
        fair = t.shards // max(1, len(load))
        while load[node] < fair:
            donor = max((n for n in load if n != node), key=lambda n: load[n], default=None)
            if donor is None or load[donor] <= fair:
                break
            shard = max(s for s, n in enumerate(where) if n == donor)
            t.plan.append([shard, node, 0])
            where[shard] = node
            load[donor] -= 1
            load[node] += 1
        t.error = None
        start_next(t)
    return Topology.change(etcd, cluster, edit)


def drain(etcd: Etcd, cluster: str, node: str) -> Topology:
    """Queue the moves of every shard of ``node`` to the other members (the
    least loaded first); the node leaves the members once it holds none."""
    def edit(t: Topology) -> None:
        _no_replicas(t, "drain")
        if node not in t.nodes:
            raise TopologyError("node %s is not a member of cluster %s (members: %s)"
                                % (node, cluster, ", ".join(t.nodes) or "none"))
        others = [n for n in t.nodes if n != node and n not in t.draining]
        if not others:
            raise TopologyError("node %s is the last member that takes shards: add a node "
                                "first (`flin cluster add-node`)" % node)
        if node not in t.draining:
            t.draining.append(node)
        t.plan = [m for m in t.plan if m[1] not in t.draining]
        if t.move is not None and t.move["to"] in t.draining and t.move["state"] == "copy":
            ended(t, t.move, "failed")   # its mover is stopped, its copy dropped
            t.move = None
        load = _load(t)
        for shard, n in enumerate(_after(t)):
            if n in t.draining:          # this node's, and any other drain's left unqueued
                to = min(others, key=lambda o: load[o])
                t.plan.append([shard, to, 0])
                load[to] += 1
        t.error = None
        _leave_if_empty(t)
        start_next(t)
    return Topology.change(etcd, cluster, edit)


def _leave_if_empty(t: Topology) -> None:
    for n in list(t.draining):
        if n not in t.placement and not any(m[1] == n for m in t.plan) and \
                not (t.move and t.move["to"] == n):
            t.draining.remove(n)
            t.nodes.remove(n)


def is_move(t: Topology, move: dict, state: str) -> bool:
    m = t.move
    return m is not None and m["shard"] == move["shard"] and m["to"] == move["to"] \
        and m.get("id") == move.get("id") and m["state"] == state


def commit_move(t: Topology, move: dict) -> None:
    """The target holds every entry: the shard is the target's from this epoch."""
    if is_move(t, move, "switch"):
        raise Unchanged()            # our own commit, resent after a timeout
    if not is_move(t, move, "copy"):
        raise TopologyError("the move of shard %d to %s was called off meanwhile"
                            % (move["shard"], move["to"]))
    t.placement[move["shard"]] = move["to"]
    t.opened[move["shard"]] = True
    t.epoch += 1
    t.move = {**move, "state": "switch", "epoch": t.epoch}


def finish_move(t: Topology, move: dict) -> None:
    if not is_move(t, move, "switch"):
        raise Unchanged()
    ended(t, move, "done")
    t.move = None
    _leave_if_empty(t)
    start_next(t)


def fail_move(t: Topology, move: dict, why: str) -> None:
    """The copy failed: queue the move again (at the end), up to ``MAX_TRIES``."""
    if not is_move(t, move, "copy"):
        raise Unchanged()
    ended(t, move, "failed")
    t.move = None
    tries = int(move.get("tries", 0)) + 1
    t.error = "moving shard %d to %s failed (try %d): %s" % (move["shard"], move["to"],
                                                             tries, why)
    if tries < MAX_TRIES:
        t.plan.append([move["shard"], move["to"], tries])
    start_next(t)


def registered_nodes(etcd: Etcd, cluster: str) -> dict[str, dict]:
    """The live nodes' registrations: {name: what the node wrote}."""
    got, _ = etcd.get_prefix(nodes_prefix(cluster))
    out = {}
    for key, (value, _lease) in got.items():
        try:
            out[key[len(nodes_prefix(cluster)):].decode()] = json.loads(value)
        except ValueError:
            continue
    return out


__all__ = ["EtcdError", "Topology", "TopologyError", "check_name", "create", "join",
           "node_key", "nodes_prefix", "registered_nodes", "root", "topology_key"]
