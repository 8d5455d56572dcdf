"""All of a host's server settings in one place; ``flin start`` options map 1:1.

Also the paths every server process agrees on inside the data folder, so
that the supervisor, the router and the workers need not import each other
to find them. Clients never import this module."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .protocol import DEFAULT_ENDPOINT

MAX_SHARDS = 4096                        # the most shards one host runs (`flin start --shards`)


@dataclass
class Config:
    data: str = "./data"                 # data folder: shard-NN/ LevelDBs, manifest, run/
    shards: int = 64                     # shard worker processes
    bind: str = DEFAULT_ENDPOINT         # client endpoint of the router
    sync: bool = False                   # fsync every acknowledged write batch
    read_cache_mb: float = 64.0          # the router's read cache of hot keys, MiB (0 = off)
    shard_timeout: float = 2.0           # s of silence from a shard with batches in flight: stalled
    shard_depth: int = 2                 # batches in flight per shard (the rest coalesce)
    shard_queue: int = 100_000           # ops queued per shard before Overloaded
    max_clients: int = 10_000            # client connections per router (less if RLIMIT_NOFILE is lower)
    write_buffer_mb: float = 1.0         # LevelDB memtable per shard, MiB
    block_cache_mb: float = 1.0          # LevelDB block cache per shard, MiB
    compression: bool = True             # snappy-compress LevelDB blocks
    max_open_files: int = 500            # LevelDB table files kept open per shard (capped by RLIMIT_NOFILE)
    log_level: str = "INFO"
    metrics_port: int | None = None      # TCP port of the Prometheus exporter on 127.0.0.1 (None = off)
    insecure: bool = False               # allow a non-loopback bind without CURVE
    # CurveZMQ (SECURITY.md; key files from `flin keygen`): None = off
    curve_secret: str | None = None      # router's key pair file (NAME.key_secret): encrypts the client endpoint
    authorized_keys: str | None = None   # folder of client public keys (*.key) the router accepts
    backend_keys: str | None = None      # folder with router/worker key pairs: CURVE on the worker link
                                         # (for workers on other hosts; today the link is owner-only ipc)

    @property
    def run_dir(self) -> str:
        """Owner-only folder for the worker link and the supervisor's state file."""
        return os.path.join(os.path.abspath(self.data), "run")

    @property
    def backend(self) -> str:
        """The router's endpoint for shard workers (ipc, owner-only)."""
        return "ipc://" + os.path.join(self.run_dir, "shards.sock")

    @property
    def link_path(self) -> str:
        """The Unix socket where workers reach the router (owner-only folder)."""
        return os.path.join(self.run_dir, "shards.link")

    @property
    def children_path(self) -> str:
        """What the supervisor knows of its children (deaths, broken shards),
        written by it and read by the router for STATUS."""
        return os.path.join(self.run_dir, "children.json")

    def shard_dir(self, shard: int) -> str:
        """The LevelDB folder of ``shard``."""
        return os.path.join(os.path.abspath(self.data), "shard-%02d" % shard)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
