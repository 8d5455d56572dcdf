"""Flin: a persistent, sharded key-value store (ZeroMQ router, LevelDB shards)."""
from .client import Client, Pipeline
from . import errors

__all__ = ["Client", "Pipeline", "errors"]
__version__ = "0.1.0"
