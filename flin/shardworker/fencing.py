"""The checks a shard runs before a keyed op (``Store.gate``): whose keys it
owns at its epoch (``Owner``; ``Away`` for a shard handed off to another
node), the keys a move tracks and fences (``moving.Move.track``), and in
cluster mode the write deadline of the node's etcd lease (``lease_fence``).
Split from ``moving.py``, which sets them up."""
from __future__ import annotations

import time
from typing import Any

from .. import errors
from ..protocol import ADMIN_OPS, NO_KEYS, OP_INFO, WRITES, written_keys
from ..ring import Ring
from .store import Store


class Owner:
    """The keys a shard owns at an epoch: those its ring gives it."""

    __slots__ = ("ring", "shard", "epoch")

    def __init__(self, ring: Ring, shard: int, epoch: int) -> None:
        self.ring, self.shard, self.epoch = ring, shard, epoch

    def owns(self, key: bytes) -> bool:
        return self.ring.shard(key) == self.shard

    def refuse(self, store: Store, op: list) -> Any:
        """None if every key of ``op`` is this shard's, else the ``Moved`` error."""
        info = OP_INFO.get(op[0])
        if info is None or info.admin:
            return None
        try:
            keys = written_keys(op) if info.keys != NO_KEYS else ()
        except (IndexError, TypeError):
            return None                     # malformed: the handler answers that
        shard = self.ring.shard
        for k in keys:
            if type(k) is bytes and shard(k) != self.shard:
                return store.error(errors.Moved, "shard %d does not own that key at epoch %d"
                                   % (self.shard, self.epoch))
        return None


class Away(Owner):
    """A shard handed off to another node, or fenced for a move whose end it
    does not know yet (``handoff.py``): it serves no key."""

    why = "lives on another node now"

    def owns(self, key: bytes) -> bool:
        return False

    def refuse(self, store: Store, op: list) -> Any:
        info = OP_INFO.get(op[0])
        if info is None or info.admin:
            return None
        return store.error(errors.Moved, "shard %d %s (epoch %d)" % (self.shard, self.why,
                                                                   self.epoch))


class Fenced(Away):
    why = "is moving to another node"


def fence(store: Store, op: list) -> Any:
    """The check ``Store.apply_some`` runs before a keyed op when the shard has
    an owner, a move or (cluster mode) a lease: None, or the error that refuses it."""
    replica = store.replica
    if replica is not None and op[0] not in ADMIN_OPS:
        refused = replica.refuse(op, op[0] in WRITES, store.via_replica)
        if refused is not None:
            return refused
    until = store.writable_until
    if until is not None and op[0] in WRITES and time.monotonic() > until:
        return store.error(errors.ShardUnavailable, store.unwritable_why)
    if store.owner is not None:
        refused = store.owner.refuse(store, op)
        if refused is not None:
            return refused
    move = store.move
    if move is not None and (op[0] in WRITES or move.fenced):
        try:
            return move.track(store, op)
        except (IndexError, TypeError, KeyError):
            return None
    return None


def lease_fence(store: Store, view: dict, node: str) -> None:
    """Cluster mode: take the node view's write deadline (``flin.nodeview``).
    Past it the node's lease may have expired in etcd, and another node could
    be given the shard, so writes are refused (reads still served) until the
    agent renews the lease or learns that every other node lost etcd too."""
    until = view.get("writable_until", 0.0)
    store.writable_until = None if until is None else float(until)
    store.unwritable_why = ("node %s cannot renew its etcd lease (%s): shard %d refuses "
                            "writes until it does; reads are served"
                            % (node, (view.get("etcd") or {}).get("error") or "no answer",
                               store.shard))
    store.gate = fence
