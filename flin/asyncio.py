"""``flin.asyncio.Client``: the asyncio client (``flin.client.aio``), re-exported.

    import flin.asyncio
    async with flin.asyncio.Client("tcp://127.0.0.1:7700") as db:
        await db.get("user:1")

Named after what it is for; ``import flin`` does not load it (nor asyncio). Every module in ``flin`` imports absolutely
(``from __future__ import annotations``, no implicit relative imports in
Python 3), so ``import asyncio`` anywhere, this file included, is the stdlib.
"""
from __future__ import annotations

from flin.client.aio import Client, Pipeline

__all__ = ["Client", "Pipeline"]
