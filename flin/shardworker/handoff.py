"""A whole shard handed to another node (cluster mode, ``flin.cluster.mover``):
its pages (``read_whole``, from ``moving.move_read``), the fence (durable:
``FENCED``, with the move's id), the hand-off at the switch (``hand_off``,
from ``moving.move_switch`` with ``WHOLE``), and the marker a handed-off
folder keeps (``MOVED_OUT``: a worker started on it exits at once,
``worker.EXIT_MOVED``).

A fenced shard serves no key until it knows how its move ended, from the
node view (``settle``): the topology's move in ``switch``, or its outcome
``done``, hands it off; the outcome ``failed`` lifts the fence. Not a timer,
not the mover's word alone: a worker restarted after the fence, a mover
that died, etcd out of reach all leave it fenced, never serving a key the
target may already own."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..protocol import MOVE_ABORT, MOVE_DIRTY, MOVE_FENCE, MOVE_READ, MOVE_SWITCH, pack_blob
from .encoding import DATA, EXPIRY, UID
from .fencing import Away, Owner, fence
from .store import Store

log = logging.getLogger("flin.shard")

MOVED_OUT = "MOVED_OUT"       # the marker of a folder whose shard another node has now
FENCED = "FENCED"             # the marker of a folder fenced for a whole-shard move (its id)
IMPORTING = "IMPORTING"       # the marker of a folder a mover is filling: never served
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
                if len(group) >= most or size >= max_bytes:
                    last = key
                    break
            if looked >= 20 * limit:      # (a long run of skipped expiry entries)
                last = key
                break
    store.moved += size
    return [[WHOLE, len(group) // 2, pack_blob(group)] if group else [], last]


_BASE_ARGS = {MOVE_READ: 5, MOVE_DIRTY: 3, MOVE_FENCE: 1, MOVE_SWITCH: 3, MOVE_ABORT: 1}


def move_id(op: list) -> str | None:
    """The whole-shard move's id an op carries (its last element), or None."""
    return op[-1] if len(op) > _BASE_ARGS.get(op[0], 99) else None


def _write(path: str, text: str) -> None:
    """A marker file, durably and whole or not at all (a temporary file renamed)."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_fenced(store: Store, move: str) -> None:
    """Fence the shard for ``move``, durably, before it refuses its first op
    (written whole or not at all: a temporary file renamed over it)."""
    _write(os.path.join(store.path, FENCED), move + "\n")
    store.fenced_id = move


def load_fence(store: Store) -> None:
    """A (re)started worker: the fence its folder holds, if any."""
    try:
        with open(os.path.join(store.path, FENCED)) as f:
            store.fenced_id = f.readline().strip() or None   # (empty: never acknowledged)
    except FileNotFoundError:
        store.fenced_id = None


def unfence(store: Store) -> None:
    """The move was called off: serve again."""
    try:
        os.unlink(os.path.join(store.path, FENCED))
    except FileNotFoundError:
        pass
    store.fenced_id = None
    move = store.move
    if move is not None and move.whole:
        move.snapshot.close()
        store.move = None
    store.owner = Owner(store.ring, store.shard, store.epoch) if store.epoch > 1 else None
    log.info("shard %d: its move was called off; serving again", store.shard)


def settle(store: Store, view: dict) -> None:
    """Fenced for a move: hand off or lift the fence once the node view says
    how the move ended; else stay fenced."""
    fid = store.fenced_id
    if fid is None or store.handed_off_at is not None:
        return
    move = view.get("move") or {}
    how = None
    for mid, ended in (view.get("outcomes") or {}).get(str(store.shard)) or []:
        if mid == fid:
            how = ended
    try:
        if (move.get("id") == fid and move.get("state") == "switch") or how == "done":
            hand_off(store, int(move.get("epoch") or view.get("epoch") or 0), fid)
        elif how == "failed":
            unfence(store)
    except OSError as exc:        # (a full disk): it stays fenced, and tries again
        log.error("shard %d: settling its move failed: %s", store.shard, exc)


def hand_off(store: Store, epoch: int, move: str | None = None) -> bool:
    """The whole shard lives on another node from now on (its copy there is
    complete, and the topology says so): mark the folder, refuse every keyed
    op, and have the worker exit after a short linger (``worker.py``). Only
    for the move the shard is fenced for: a shard that is not fenced may
    have taken writes the target does not have."""
    if store.handed_off_at is not None:
        return True
    if store.fenced_id is None or store.fenced_id != move:
        raise ValueError("shard %d is not fenced for move %s: no hand-off" % (store.shard, move))
    failure = store.settle() if store.pend else None
    if failure is not None:
        raise ValueError("shard %d could not commit before the hand-off" % store.shard)
    _write(os.path.join(store.path, MOVED_OUT), "%d\n" % epoch)
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
