"""``ClusterView``: what the planner's STATUS and STATS report besides the
shards' answers (the router's own state and the supervisor's), so that the
planner stays pure; ``stats.RouterView`` is the router's."""
from __future__ import annotations

from typing import Protocol


class ClusterView(Protocol):
    """What STATUS and STATS report besides the shards' answers."""

    def supervisor_state(self) -> dict:
        """The supervisor's view: ``{"supervisor": pid, "routers": [{"id", "pid", "deaths",
        "endpoint"}], "shards": [{"pid", "deaths", "broken"}]}`` ({} if unknown)."""
        ...

    def me(self) -> int:
        """This router's id in the pool (0 for the first)."""
        ...

    def endpoints(self) -> list[str]:
        """Every router's client endpoint, router 0's first."""
        ...

    def alive(self, pid: int) -> bool:
        """Whether process ``pid`` runs."""
        ...

    def router_stats(self) -> dict:
        """The router's own figures (``flin.router.stats``)."""
        ...

    def cache_stats(self, shard: int) -> dict | None:
        """Read-cache hits and misses for a shard's keys (None: no cache)."""
        ...

    def uptime(self) -> float:
        """Seconds since this router process started."""

    def resp(self) -> str | None:
        """Where the routers speak the Redis protocol (HOST:PORT; None: off)."""

    def cluster(self) -> dict | None:
        """Cluster mode: the node's view of its cluster (``flin.nodeview``) in
        short; None on one host."""

    def epoch(self) -> int:
        """The topology epoch this router routes by (``resharding.py``)."""
