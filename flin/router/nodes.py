"""Cluster mode, the router's part (a mixin of ``loop.Router``): the node
view (``flin.nodeview``, re-read when its file changes), the shards of this
node (they make the router ready), and the shards changing nodes: a batch
that finds no worker for one of them is sent again (``shards.send_batch``,
as after ``Moved``) rather than refused, while the new node's worker comes."""
from __future__ import annotations

import random
import time
from typing import Any

from .. import nodeview
from ..config import Config
from .shards import UP

HANDOFF_S = 5.0          # a shard changing nodes: how long a batch finding no worker waits


class Nodes:
    cfg: Config
    ring: Any
    state: list
    links: Any
    ready_shards: set[int] | None
    handoff: dict[int, float]

    def init_nodes(self) -> None:
        cfg = self.cfg
        self.node_view = nodeview.View(cfg.run_dir) if cfg.etcd else None
        self.placement: list = []           # the view's, shard -> node
        self.primaries: dict[int, list] = {}   # replicas: shard -> [node, term]
        self.copies = 1                      # replicas: copies of each shard
        self.planner.pick = self.replica_slot  # type: ignore[attr-defined]
        if self.node_view is not None:
            self.node_view.poll()
            self.on_node_view(time.monotonic())

    def node_tick(self, now: float) -> None:
        if self.node_view is not None and self.node_view.poll():
            self.on_node_view(now)

    def on_node_view(self, now: float) -> None:
        """A new node view: the shards changing nodes, what makes us ready."""
        view = self.node_view.data if self.node_view is not None else {}
        if view.get("replicas"):
            self.on_replicas(view, now)
            return
        placement = view.get("placement") or []
        move = view.get("move")
        if move is not None and move.get("state") == "switch":
            self.handoff[int(move["shard"])] = now + HANDOFF_S
        for s, n in enumerate(placement):
            if s < len(self.placement) and self.placement[s] != n:
                self.handoff[s] = now + HANDOFF_S
        self.placement = list(placement)
        for s in [s for s, t in self.handoff.items() if t < now]:
            del self.handoff[s]
        self.ready_shards = self.local_shards()

    def on_replicas(self, view: dict, now: float) -> None:
        """Replicas: each shard's primary (named by etcd) takes its slot; its
        copies take the slots after the shards' (``shardworker.worker.replica_slot``)
        for replica reads. A batch that finds no primary linked is sent again
        (as after ``Moved``, for ``MOVED_FOR_S``) rather than refused: an
        election is under way, or about to be."""
        reps = view.get("replicas") or []
        n = len(reps)
        self.copies = max((len(r) for r in reps), default=1)
        self.grow(n * (1 + self.copies))  # type: ignore[attr-defined]
        prim = {int(s): p for s, p in (view.get("primaries") or {}).items()}
        for s in range(n):   # a primary lost, or being elected: always waited for a while
            self.handoff[s] = float("inf")
        self.primaries = prim
        links = self.links   # ``links.ZmqLinks``: the primary's name, by its term
        for s, p in prim.items():
            if p and p[1] is not None and int(p[1]) > links.terms[s]:
                links.idents[s], links.terms[s] = b"shard-%d-%d" % (s, int(p[1])), int(p[1])
        me = view.get("me")
        self.ready_shards = {s for s, p in prim.items() if p and p[0] == me}

    def replica_slot(self, shard: int) -> int:
        """Where a read that accepts staleness goes: any copy that is up."""
        if self.copies < 2:
            return shard
        n, up = self.ring.shards, self.state
        slots = [s for s in (shard + n * (1 + k) for k in range(self.copies))
                 if s < len(up) and up[s] == UP]
        return random.choice(slots) if slots else shard

    def local_shards(self) -> set[int]:
        """The shards placed on this node (the view's)."""
        view = self.node_view.data if self.node_view is not None else {}
        me = view.get("me")
        return {s for s, n in enumerate(view.get("placement") or []) if n == me}
