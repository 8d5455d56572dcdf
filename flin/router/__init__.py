"""The router process: between clients and shard workers, one loop, no threads.

Owns: the loop and its sockets (``loop.py``, ``sockets.py``), its side of
the shards (``shards.py``: outboxes, batches in flight, stalls) and its end
of the worker links (``links.py``), the replies to clients (``replies.py``),
the planner that splits commands into shard ops (``planner.py``), the
requests waiting for shard answers (``pending.py``), the read cache
(``readcache.py``), the router's figures (``stats.py``) and, in cluster
mode, the node view and the shards changing nodes (``nodes.py``).
May import: the shared floor (``flin.protocol``, ``ring``, ``errors``,
``config``, ``curve``, ``figures``, ``zmqflags``, ``nodeview``). Never the shard worker,
the supervisor or the client: what it needs from the supervisor comes as a
file (``Config.children_path``) or as arguments.
"""
from __future__ import annotations

from .loop import EXIT_BIND, Router, run

__all__ = ["EXIT_BIND", "Router", "run"]
