"""One host's data folder: its manifest (``flin.json``), the owner-only run
folder (``run/``: sockets, the pid file, the supervisor's state) and how to
find and stop the supervisor serving it. The supervisor, the offline tools
(``flin.ops``) and the CLI share this; it imports no process role.

    DATA/flin.json          format, shard count, ring parameters (written once)
    DATA/shard-NN/          one LevelDB per shard
    DATA/run/flin.pid       the supervisor's pid while it runs
    DATA/run/children.json  deaths and broken shards, for ``flin status``
    DATA/run/shards.link    the router's Unix socket for the workers
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from ..config import Config
from ..ring import Ring
from . import processes

FORMAT_VERSION = 1
MANIFEST = "flin.json"


class StartError(Exception):
    """The cluster cannot start; the message says why and what to do."""


def write_json(path: str, obj: Any, durable: bool = True) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically (a temporary file
    renamed over it); ``durable`` also fsyncs the file before the rename."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2 if durable else None)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def load_manifest(cfg: Config) -> dict | None:
    """The data folder's manifest, None if it has none."""
    path = os.path.join(cfg.data, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)  # type: ignore[no-any-return]


def write_manifest(cfg: Config, ring: Ring, **extra: object) -> dict:
    """Write ``flin.json`` (atomically): the data format, shard count and ring."""
    manifest = {"format": FORMAT_VERSION, "shards": cfg.shards, "ring": ring.params(),
                "created": time.time(), **extra}
    write_json(os.path.join(cfg.data, MANIFEST), manifest)
    return manifest


def check_or_write_manifest(cfg: Config, ring: Ring) -> dict:
    """The data folder's manifest: created on first start, then enforced."""
    manifest = load_manifest(cfg)
    if manifest is None:
        if any(n.startswith("shard-") for n in os.listdir(cfg.data)):
            raise StartError("%s holds shard folders but no %s; refusing to guess "
                             "its layout" % (cfg.data, MANIFEST))
        return write_manifest(cfg, ring)
    if manifest.get("format") != FORMAT_VERSION:
        raise StartError("%s has data format %r; this Flin reads format %d"
                         % (cfg.data, manifest.get("format"), FORMAT_VERSION))
    if manifest.get("shards") != cfg.shards:
        raise StartError(
            "%s was made with %s shards, not %d. Start with --shards %s "
            "(resharding an existing folder is not supported yet)."
            % (cfg.data, manifest.get("shards"), cfg.shards, manifest.get("shards")))
    if manifest.get("ring") != ring.params():
        raise StartError("%s was made with ring %r, not %r"
                         % (cfg.data, manifest.get("ring"), ring.params()))
    return manifest


def pid_file(cfg: Config) -> str:
    """Where the supervisor serving ``cfg.data`` writes its pid."""
    return os.path.join(cfg.run_dir, "flin.pid")


def running_pid(cfg: Config) -> int | None:
    """The pid of the supervisor serving ``cfg.data``, if one is alive."""
    try:
        with open(pid_file(cfg)) as f:
            pid = int(f.read().strip())
        return pid if processes.alive(pid) else None
    except (OSError, ValueError):
        return None


def stop(cfg: Config, timeout: float = 30.0) -> bool:
    """SIGTERM the supervisor serving ``cfg.data`` and wait for it to exit.
    False if none was running."""
    pid = running_pid(cfg)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            return True
        time.sleep(0.05)
    raise TimeoutError("supervisor %d did not stop within %.0fs" % (pid, timeout))
