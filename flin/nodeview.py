"""Cluster mode: the node's view of its cluster, as a file, ``DATA/run/cluster.json``.

The agent (``flin.cluster.agent``) writes it, atomically, whenever what it learned
from etcd changes; the supervisor, the routers and the shard workers of the
node read it (``View.poll`` costs one ``stat`` when nothing changed). So
only the agent talks to etcd, and the data path runs on the last view it
wrote, whatever etcd does meanwhile.

The view: ``epoch``, ``shards``, ``placement`` (shard -> node), ``me``,
``nodes`` ({name: {"routers": [client endpoints], "backends": [endpoints
for shard workers], "alive": bool}}), ``routers`` (every live node's
client endpoints, this node's first), ``backends`` (every live node's
router endpoints for workers), ``move`` (the shard move in progress),
``etcd`` ({"ok": bool, "error": str, "since": unix time}), and
``writable_until`` (a CLOCK_MONOTONIC time, the same clock in every process
of the machine: after it this node's shards refuse writes, because its
lease may have expired in etcd; None: no limit).

It is in the shared floor, importing nothing of etcd or of ``flin.cluster``, so
that the router and the shard worker may read it.
"""
from __future__ import annotations

import json
import os
from typing import Any

FILE = "cluster.json"


def path_in(run_dir: str) -> str:
    return os.path.join(run_dir, FILE)


def write(run_dir: str, view: dict[str, Any]) -> None:
    """Replace the view atomically (readers see the old or the new one)."""
    path = path_in(run_dir)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(view, f)
    os.replace(tmp, path)


def read(run_dir: str) -> dict[str, Any] | None:
    try:
        with open(path_in(run_dir)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class View:
    """The last view read; ``poll()`` re-reads it when the file changed."""

    def __init__(self, run_dir: str) -> None:
        self.path = path_in(run_dir)
        self.run_dir = run_dir
        self.stamp: tuple[int, int] | None = None
        self.data: dict[str, Any] = {}

    def poll(self) -> bool:
        """Whether a new view was read."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self.stamp:
            return False
        got = read(self.run_dir)
        if got is None:
            return False
        self.stamp, self.data = stamp, got
        return True

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)
