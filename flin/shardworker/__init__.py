"""A shard worker process: one LevelDB folder, one loop.

Owns: the loop (``worker.py``), its end of the link to the router
(``link.py``), the store (``store.py``: overlay, one write batch, sweeps,
recovery), the key layout (``encoding.py``) and the op handlers
(``reads.py``, ``writes.py``, ``admin.py``) in one table (``handlers.py``),
a shard's part in a reshard or a move (``moving.py``; the checks before an
op, ``fencing.py``; a whole shard handed to another node, ``handoff.py``).
May import: the shared floor (``flin.protocol``, ``errors``, ``config``,
``curve``, ``zmqflags``, ``nodeview``). Never the router, the supervisor or
the client.
"""
from __future__ import annotations

from .worker import EXIT_MOVED, EXIT_STORAGE, run

__all__ = ["EXIT_MOVED", "EXIT_STORAGE", "run"]
