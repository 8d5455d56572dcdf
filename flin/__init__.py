"""Flin: a persistent, sharded key-value store (ZeroMQ router, LevelDB shards).

The map (docs/ARCHITECTURE.md has it in full); imports only point down:

    flin.cli          the ``flin`` command: one module per command family
    flin.ops          offline and online tools: backup, restore, repair, log surgery
    flin.supervisor   one host's processes: fork, watch, restart, stop; data folder
    flin.router       the router process: loop, planner, pending requests, read cache
    flin.shardworker  a shard worker process: loop, store, op handlers
    flin.client       the Python client (no server code)
    protocol, ring, errors, config, curve, figures, zmqflags: the shared floor
"""
from . import errors
from .client import Client, Pipeline

__all__ = ["Client", "Pipeline", "errors"]
__version__ = "0.1.0"
