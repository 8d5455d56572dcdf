"""Cluster mode, the router's part (a mixin of ``loop.Router``): the node
view (``flin.nodeview``, re-read when its file changes), the shards of this
node (they make the router ready), and the shards changing nodes: a batch
that finds no worker for one of them is sent again (``shards.send_batch``,
as after ``Moved``) rather than refused, while the new node's worker comes."""
from __future__ import annotations

import time

from .. import nodeview
from ..config import Config

HANDOFF_S = 5.0          # a shard changing nodes: how long a batch finding no worker waits


class Nodes:
    cfg: Config
    ready_shards: set[int] | None
    handoff: dict[int, float]

    def init_nodes(self) -> None:
        cfg = self.cfg
        self.node_view = nodeview.View(cfg.run_dir) if cfg.etcd else None
        self.placement: list = []           # the view's, shard -> node
        if self.node_view is not None:
            self.node_view.poll()
            self.on_node_view(time.monotonic())

    def node_tick(self, now: float) -> None:
        if self.node_view is not None and self.node_view.poll():
            self.on_node_view(now)

    def on_node_view(self, now: float) -> None:
        """A new node view: the shards changing nodes, what makes us ready."""
        view = self.node_view.data if self.node_view is not None else {}
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

    def local_shards(self) -> set[int]:
        """The shards placed on this node (the view's)."""
        view = self.node_view.data if self.node_view is not None else {}
        me = view.get("me")
        return {s for s, n in enumerate(view.get("placement") or []) if n == me}
