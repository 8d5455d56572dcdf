"""A shard's part in a live reshard (``flin reshard``): which keys it owns at
its epoch (the fence), the keys it sends away, the ones it takes in, and the
cleanup of those it no longer owns.

The fence (``Owner``): once a folder has been resharded (epoch > 1), or
while a shard holds keys it does not own (it took some in, or gave some
away), every keyed op is checked against the ring of the shard's epoch, and
one on a key it does not own is refused with ``Moved``, never served: the
router re-routes it (``router.moves``). SCAN skips such keys. A folder never
resharded checks nothing.

A source, from ``MOVE_BEGIN`` on (``Move``): a LevelDB snapshot taken in the
same step as it starts recording the moving keys its writes touch
(``dirty``), so that the snapshot and the dirty keys together are every
change. ``MOVE_READ`` pages the snapshot's moving entries (a value with its
expiry header; every remembered request uid, and its expiry entry, which go
to every target: a uid does not say its key); ``MOVE_DIRTY`` hands out the
current value of dirty keys (nil: deleted or gone). After ``MOVE_FENCE``
its writes to moving keys are refused with ``Moved`` (the router holds and
resends them) so that the last catch-up is the last. ``MOVE_SWITCH`` takes
the new epoch: from then on the shard owns only the new ring's keys.

A whole-shard move to another node (cluster mode, ``flin.cluster.mover``)
is a move with ``to`` = ``WHOLE``: every key moves, the entries go to the
mover, which writes them into the shard's new LevelDB on the target node,
and ``MOVE_SWITCH`` with ``WHOLE`` hands the shard off: a ``MOVED_OUT``
marker in the folder (a restarted worker exits at once with
``EXIT_MOVED``), every keyed op and scan answered ``Moved`` for a short
linger, then the worker exits, and its node drops the folder.

A target takes entries in with ``MOVE_IMPORT`` (plain puts in the message's
write batch: nothing routes to it for those keys before the switch).

Cleanup: a shard that may hold keys it does not own has a marker file
(``CLEANUP`` in its folder, written before it takes any key in, and at the
switch); the worker then deletes, a bounded number per turn, every data key
its ring does not give it, and removes the marker at the end of a pass. A
crash in between runs the pass again. Until then the fence hides those keys.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from .. import errors
from ..protocol import (
    CAS, INCR, MAX_SCAN_LIMIT, MAX_SNAPSHOT_BYTES, MOVE_ABORT, WRITES, pack_blob, unpack_blob,
    written_keys,
)
from ..ring import Ring
from .encoding import DATA, EXPIRY, UID, expiry_key, index_entry
from .fencing import Fenced, Owner, fence
from .handoff import (
    WHOLE, hand_off, load_fence, mark_fenced, move_id, read_whole, unfence,
)
from .store import Store
from .writes import UID_KEEP_MS

log = logging.getLogger("flin.shard")

CLEANUP = "CLEANUP"           # the marker file in a shard's folder
MOVE_IDLE_S = 120.0           # a move no MOVE_* op touched for this long is dropped
_CLEANUP_BUDGET = 2000        # keys looked at per cleanup step


class Move:
    """A source's state while its keys move to the ring of ``to`` shards
    (``WHOLE``: all of them, to the same shard on another node)."""

    def __init__(self, store: Store, to: int, epoch: int, table: bytes | None = None) -> None:
        self.whole = to == WHOLE
        self.next = None if self.whole else \
            Ring(to) if table is None else Ring.from_table(to, table)
        self.to, self.epoch = to, epoch
        self.snapshot = store.db.snapshot()
        self.dirty: dict[bytes, None] = {}     # moving keys written since the snapshot
        self.uids: dict[bytes, bytes] = {}     # request uid -> its key, of INCR/CAS meanwhile
        self.fenced = False
        self.shard = store.shard
        self.used = time.monotonic()           # the last MOVE_* op (``MOVE_IDLE_S``)
        # a whole-shard move's id (the topology's): its every op must carry it
        self.id: str | None = None if not self.whole or table is None else \
            table.decode() if type(table) is bytes else str(table)

    def moving(self, key: bytes) -> bool:
        return self.whole or self.next.shard(key) != self.shard  # type: ignore[union-attr]

    def target(self, key: bytes) -> int:
        """The shard ``key`` moves to (``WHOLE`` in a whole-shard move)."""
        return WHOLE if self.next is None else self.next.shard(key)

    def track(self, store: Store, op: list) -> Any:
        """Record the moving keys a write touches (and the request uid of an
        INCR or CAS, which must follow its key); once fenced, refuse any op
        on a moving key, a read too: the value it would see may be behind a
        write of the same request that was refused and re-routed."""
        if self.whole and self.fenced:  # every keyed op and scan: the whole shard moves
            return Fenced(store.ring, self.shard, self.epoch).refuse(store, op)
        keys = [k for k in written_keys(op) if type(k) is bytes and self.moving(k)]
        if not keys:
            return None
        if self.fenced:
            return store.error(errors.Moved, "shard %d: that key is moving to %s (epoch %d)"
                               % (self.shard, "another node" if self.whole else
                                  "shard %d" % self.target(keys[0]), self.epoch))
        if op[0] in WRITES:
            for k in keys:
                self.dirty[k] = None
            uid = op[3] if op[0] == INCR else op[4] if op[0] == CAS else None
            if type(uid) is bytes:
                self.uids[uid] = keys[0]
        return None


# -- the ops ------------------------------------------------------------------------
def _settled(store: Store) -> Any:
    return store.settle() if store.pend else None


def move_begin(store: Store, op: list) -> Any:
    """[MOVE_BEGIN, to, epoch, table|nil] -> True: snapshot now, and record from
    now on; ``table``: the next ring's (``Ring.table_bytes``), else built here."""
    _, to, epoch, table = op
    failure = _settled(store)
    if failure is not None:
        return failure
    held = store.fenced_id
    if held is not None:
        raise ValueError("shard %d is fenced for move %s, whose end it does not know yet"
                         % (store.shard, held))
    if store.move is not None:
        store.move.snapshot.close()
    store.move = Move(store, int(to), int(epoch), table)
    store.gate = fence
    return True


def _move_of(store: Store, op: list) -> Move:
    move = store.move
    if move is None:
        raise ValueError("shard %d has no move in progress (it restarted?)" % store.shard)
    if move.id != move_id(op):
        raise ValueError("shard %d: that is not the move in progress (another mover's?)"
                         % store.shard)
    move.used = time.monotonic()
    return move


def expire_move(store: Store) -> bool:
    """Drop a move no MOVE_* op touched for ``MOVE_IDLE_S`` (its driver is
    gone, and its abort never came): its fence, snapshot and dirty keys go,
    and what the shard took in is cleaned up. True if it did."""
    move = store.move
    if move is None or time.monotonic() - move.used < MOVE_IDLE_S:
        return False
    if move.whole and move.fenced:   # only its outcome in the topology ends it (handoff.py)
        return False
    log.warning("shard %d: no reshard step for %.0fs: calling the move off", store.shard,
                MOVE_IDLE_S)
    move_abort(store, [MOVE_ABORT])
    return True


def move_read(store: Store, op: list) -> Any:
    """[MOVE_READ, after|nil, limit, max_bytes(, backward)] -> [[target, entries,
    blob, ...], last|nil]: the snapshot's entries that move, packed once per
    target (target -1: every target) into a blob ``MOVE_IMPORT`` takes as it
    is: the router and the driver pass bytes on, and loop over no entry.
    ``backward`` (whole-shard moves): the entries before ``after``, from the
    end down, so that a mover can page from both ends at once."""
    _, after, limit, max_bytes = op[:4]
    backward = len(op) > 4 and op[4] is True
    move = _move_of(store, op)
    limit = max(1, min(int(limit), MAX_SCAN_LIMIT))
    max_bytes = max(1, min(int(max_bytes), MAX_SNAPSHOT_BYTES))
    snap = move.snapshot
    if backward:
        it = snap.iterator(reverse=True, verify_checksums=True) if after is None else \
            snap.iterator(reverse=True, stop=after, verify_checksums=True)
    else:
        it = snap.iterator(verify_checksums=True) if after is None else \
            snap.iterator(start=after, include_start=False, verify_checksums=True)
    if move.whole:
        return read_whole(store, it, limit, max_bytes)
    if backward:
        it.close()
        raise ValueError("only a whole-shard move pages backward")
    groups: dict[int, list] = {}
    size = looked = taken = 0
    last = None
    nxt, me = move.target, move.shard
    with it:
        for key, value in it:
            looked += 1
            kind = key[:1]
            if kind == DATA:
                target = nxt(key[1:])
                if target == me:
                    continue
            elif kind == UID:
                target = -1
            elif kind == EXPIRY:   # a value's comes with it; a uid's goes everywhere
                if key[9:10] == DATA:
                    continue
                target = -1
            else:
                continue
            group = groups.get(target)
            if group is None:
                group = groups[target] = []
            group += (key, value)
            taken += 1
            size += len(key) + len(value)
            if taken >= limit or size >= max_bytes or looked >= 20 * limit:
                last = key
                break
        else:
            last = None
    store.moved += size
    out: list = []
    for target, group in groups.items():
        out += (target, len(group) // 2, pack_blob(group))
    return [out, last]


def move_dirty(store: Store, op: list) -> Any:
    """[MOVE_DIRTY, limit, max_bytes] -> [[target, key, value|nil, ...], left]: the
    current value of moving keys written since the snapshot (nil: not there),
    and the request uids of INCR/CAS on them (each to its key's target, with
    a new expiry entry); at most ``limit`` keys or past ``max_bytes``."""
    _, limit, max_bytes = op[:3]
    move = _move_of(store, op)
    failure = _settled(store)
    if failure is not None:
        return failure
    out: list = []
    size = 0
    db = store.db
    nxt = move.target
    uids = move.uids
    while uids and size < max_bytes:
        uid, key = uids.popitem()
        raw = db.get(UID + uid, verify_checksums=True)
        if raw is not None:
            target = nxt(key)
            out += (target, UID + uid, raw,
                    target, expiry_key(store.now + UID_KEEP_MS, UID + uid), b"")
            size += len(uid) + len(raw)
    dirty = move.dirty
    for k in list(dirty)[:max(1, min(int(limit), MAX_SCAN_LIMIT))]:
        if size >= max_bytes:
            break
        del dirty[k]
        dkey = DATA + k
        raw = db.get(dkey, verify_checksums=True)
        out += (nxt(k), dkey, raw)
        size += len(k) + len(raw or b"")
    return [out, len(dirty) + len(uids)]


def move_fence(store: Store, op: list) -> Any:
    """[MOVE_FENCE(, id)] -> dirty keys left: from now on, writes to moving keys
    are refused; for a whole-shard move every keyed op, and durably (a worker
    restarted meanwhile stays fenced: ``handoff.py``)."""
    move = _move_of(store, op)
    if move.whole and not move.fenced:
        mark_fenced(store, move.id or "")
    move.fenced = True
    return len(move.dirty)


def move_import(store: Store, op: list) -> Any:
    """[MOVE_IMPORT, [key, value|nil, ...] or its blob] -> entries taken: raw
    entries from a source, in this message's write batch."""
    _, flat = op
    if store.move is not None:
        store.move.used = time.monotonic()
    if type(flat) is bytes:            # a page as MOVE_READ packed it
        flat = unpack_blob(flat)
    mark_cleanup(store, now=False)     # (a stat when it is there)
    pend = store.pend
    for i in range(0, len(flat), 2):
        key, value = flat[i], flat[i + 1]
        if type(key) is not bytes or (value is not None and type(value) is not bytes):
            raise TypeError("entries are bin keys and bin values or nil")
        store.touched = True
        pend[key] = value
        if value is None:
            continue
        store.moved += len(value)
        index = index_entry(key, value)
        if index is not None:
            pend[index] = b""
    return len(flat) // 2


def move_switch(store: Store, op: list) -> Any:
    """[MOVE_SWITCH, to, epoch] -> True: own the keys of the ring of ``to`` shards."""
    _, to, epoch = op[:3]
    if to == WHOLE:
        return hand_off(store, int(epoch), move_id(op))
    mark_cleanup(store)
    move = store.move
    ring = move.next if move is not None and move.to == to else Ring(int(to))
    if move is not None:
        move.snapshot.close()
        store.move = None
    store.owner = Owner(ring, store.shard, int(epoch))
    store.ring, store.epoch = ring, int(epoch)
    store.gate = fence
    store.cleanup_at = b""
    return True


def move_abort(store: Store, op: list) -> Any:
    """[MOVE_ABORT(, id)] -> True: the move is off; what was taken in is cleaned
    up. A whole-shard move is called off only by its own id."""
    move = store.move
    if move is not None and move.whole and move.id != move_id(op):
        return False
    if move is not None:
        move.snapshot.close()
        store.move = None
    if store.fenced_id is not None and store.fenced_id == move_id(op):
        unfence(store)
    if os.path.exists(os.path.join(store.path, CLEANUP)) and store.cleanup_at is None:
        store.cleanup_at = b""
    return True


# -- cleanup ------------------------------------------------------------------------
def on_start(store: Store, ring: Ring, epoch: int) -> None:
    """The topology a (re)started worker acts on; fenced if the folder was
    resharded, cleaning up if its marker says a pass is owed."""
    store.ring, store.epoch = ring, epoch
    if epoch > 1:
        store.owner = Owner(ring, store.shard, epoch)
        store.gate = fence
    load_fence(store)
    if store.fenced_id is not None:      # fenced for a whole-shard move when it stopped
        store.owner = Fenced(ring, store.shard, epoch)
        store.gate = fence
    if os.path.exists(os.path.join(store.path, CLEANUP)):
        mark_cleanup(store)


def mark_cleanup(store: Store, now: bool = True) -> None:
    """This shard may hold keys it does not own: fence it, and clean up, now
    or (``now`` False: it is taking keys in for a switch to come) once the
    switch or an abort says so. The marker survives a crash, so that a
    restart cleans up (a worker restarted during a reshard aborts it)."""
    if store.owner is None:
        store.owner = Owner(store.ring, store.shard, store.epoch)
    store.gate = fence
    path = os.path.join(store.path, CLEANUP)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("%d\n" % store.epoch)
            f.flush()
            os.fsync(f.fileno())
    if now and store.cleanup_at is None:
        store.cleanup_at = b""


def cleanup_step(store: Store, budget: int = _CLEANUP_BUDGET) -> int:
    """Delete up to ``budget`` data keys this shard does not own (from where
    the last step stopped); at the end of a pass remove the marker. Returns
    the keys looked at. Not while a reshard is moving keys in or out."""
    start = store.cleanup_at
    if start is None or store.owner is None or store.move is not None or store.write_failed_at:
        return 0
    owns = store.owner.owns
    n = gone = 0
    last = None
    wb = store.db.write_batch(sync=store.sync)
    it = store.db.iterator(start=DATA + start, stop=b"e", include_value=False)
    with it:
        for dkey in it:
            if dkey == DATA + start and start:
                continue
            n += 1
            last = dkey[1:]
            if not owns(last):
                wb.delete(dkey)
                gone += 1
            if n >= budget:
                break
    if gone:
        wb.write()
    if n < budget:                           # the pass is done
        try:
            os.unlink(os.path.join(store.path, CLEANUP))
        except FileNotFoundError:
            pass
        store.cleanup_at = None
    else:
        store.cleanup_at = last
    return n
