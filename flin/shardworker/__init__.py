"""A shard worker process: one LevelDB folder, one loop.

Owns: the loop (``worker.py``), its end of the link to the router
(``link.py``), the store (``store.py``: overlay, one write batch, sweeps,
recovery), the key layout (``encoding.py``) and the op handlers
(``reads.py``, ``writes.py``, ``admin.py``) in one table (``handlers.py``).
May import: the shared floor (``flin.protocol``, ``errors``, ``config``,
``curve``, ``zmqflags``). Never the router, the supervisor or the client.
"""
from __future__ import annotations

from .worker import EXIT_MOVED, EXIT_STORAGE, run

__all__ = ["EXIT_MOVED", "EXIT_STORAGE", "run"]
