"""The Python client: ``Client`` (one DEALER socket, many requests in flight,
typed errors, safe retries) and ``Pipeline`` (many commands, one round trip).

Owns: the client's transport (``client.py``), the command builders shared by
``Client`` and ``Pipeline`` (``commands.py``), the pipeline, and the retry
rules (``retry.py``); the asyncio client (``aio.py``, ``flin.asyncio``) and
its multiplexed socket (``mux.py``, with its deadline sweep in
``deadlines.py``), which reuse the builders and rules. May import: the shared floor (``flin.protocol``,
``flin.errors``, ``flin.curve``, ``flin.zmqflags``) only, never a server
module: an application that imports ``flin`` loads no router, worker or
supervisor code.
"""
from __future__ import annotations

from .client import Client
from .pipeline import Pipeline

__all__ = ["Client", "Pipeline"]
