"""A whole shard handed to another node (cluster mode, ``flin.cluster.mover``):
its pages (``read_whole``, from ``moving.move_read``), the hand-off at the
switch (``hand_off``, from ``moving.move_switch`` with ``WHOLE``), and the
marker a handed-off folder keeps (``MOVED_OUT``: a worker started on it
exits at once, ``worker.EXIT_MOVED``)."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..protocol import pack_blob
from .encoding import DATA, EXPIRY, UID
from .fencing import Away, fence
from .store import Store

log = logging.getLogger("flin.shard")

MOVED_OUT = "MOVED_OUT"       # the marker of a folder whose shard another node has now
WHOLE = -1                    # MOVE_BEGIN's and MOVE_SWITCH's ``to``: the whole shard moves


def read_whole(store: Store, it: Any, limit: int, max_bytes: int) -> list:
    """``move_read`` of a whole-shard move: every value, uid and uid expiry
    entry, in one blob (a tight loop: this is the move's speed)."""
    group: list = []
    size = looked = 0
    last = None
    most = 2 * limit
    with it:
        for key, value in it:
            looked += 1
            kind = key[:1]
            if kind == DATA or kind == UID or (kind == EXPIRY and key[9:10] != DATA):
                group += (key, value)
                size += len(key) + len(value)
                if len(group) >= most or size >= max_bytes or looked >= 20 * limit:
                    last = key
                    break
    store.moved += size
    return [[WHOLE, len(group) // 2, pack_blob(group)] if group else [], last]


def hand_off(store: Store, epoch: int) -> bool:
    """The whole shard lives on another node from now on (its copy there is
    complete, and the topology says so): mark the folder, refuse every keyed
    op, and have the worker exit after a short linger (``worker.py``)."""
    failure = store.settle() if store.pend else None
    if failure is not None:
        raise ValueError("shard %d could not commit before the hand-off" % store.shard)
    path = os.path.join(store.path, MOVED_OUT)
    with open(path, "w") as f:
        f.write("%d\n" % epoch)
        f.flush()
        os.fsync(f.fileno())
    if store.move is not None:
        store.move.snapshot.close()
        store.move = None
    store.owner = Away(store.ring, store.shard, epoch)
    store.gate = fence
    if store.handed_off_at is None:
        store.handed_off_at = time.monotonic()
    log.info("shard %d: handed off to another node (epoch %d)", store.shard, epoch)
    return True


def handed_off(path: str) -> bool:
    """Whether the shard folder at ``path`` was handed off to another node."""
    return os.path.exists(os.path.join(path, MOVED_OUT))
