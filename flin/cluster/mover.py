"""The mover: moves one whole shard onto this node while the cluster serves.

A child of the target node's supervisor, started while the topology's
``move`` names this node as its target (``topology.py``). Through this
node's router 0 (``[SHARD, s, op]``, which reaches the source worker on
whatever node it runs) it

1. calls off an earlier attempt (``MOVE_ABORT``), makes the shard's folder
   here anew, empty, marked ``IMPORTING``;
2. ``MOVE_BEGIN`` with ``WHOLE`` (the source snapshots, and records the keys
   written from then on), then pages the snapshot (``MOVE_READ``, the next
   page asked for before this one is written) into the new LevelDB: values
   with their expiry, and the request uids of INCR/CAS;
3. catches up (``MOVE_DIRTY``) until little is left, then ``MOVE_FENCE``
   (the source refuses every keyed op with ``Moved``; the routers resend
   those for up to 2 s) and the last catch-up; syncs and closes the LevelDB;
4. **commits**: a compare-and-swap of the topology puts the shard on this
   node (epoch + 1, the move's state ``switch``); only from here the move
   goes forward;
5. removes the ``IMPORTING`` marker, hands the source off (``MOVE_SWITCH``
   with ``WHOLE``: it answers ``Moved`` for a moment, exits, and its node
   drops its folder), and clears the move (the next queued one starts);
   this node's supervisor then starts the shard's worker here.

Every op on the source carries the move's id (the topology's, new for each
try): a mover whose move was withdrawn cannot touch the next one. The fence
is durable (``shardworker/handoff.py``): a source restarted after it stays
fenced, serving no key, until its node view shows how the move ended; the
mover checks the fence once more after the last catch-up, before the commit.
Each try first changes the topology (``arm``): a commit of an earlier try
whose answer timed out, still in flight in etcd, then fails its compare.

A failure before the commit calls the move off (``MOVE_ABORT``; the move
goes back in the plan, ``topology.fail_move``, which records its outcome)
and removes the folder here, once etcd confirms the placement does not name
this node. An unclear commit (etcd did not answer) is not a failure: the
mover exits, and started again it reads the topology: in ``copy`` it starts
over, in ``switch`` it does step 5.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from typing import Any

from .. import errors, protocol
from ..client import Client
from ..config import Config
from ..protocol import (
    MOVE_ABORT, MOVE_BEGIN, MOVE_DIRTY, MOVE_FENCE, MOVE_READ, MOVE_SWITCH, SHARD, ErrorReply,
    unpack_blob,
)
from ..shardworker.handoff import IMPORTING
from .etcd import Etcd, EtcdError
from .topology import (
    Topology, TopologyError, commit_move, fail_move, finish_move, is_move, root,
)

log = logging.getLogger("flin.cluster")

PAGE_KEYS = 5000                 # entries per MOVE_READ page
PAGE_BYTES = 8 << 20             # bytes per page (~80 ms of the source at ~100 MB/s)
GENTLE_BYTES = 1 << 20           # ... while clients use the shard: ~10 ms at a time
BUSY_OPS = 50                    # the source's client ops/s past which the copy yields:
YIELD = 3.0                      # it waits this many times as long as each page took
_DATA_OPS = frozenset(("get", "set", "del", "exists", "mget", "mset", "incr", "expire",
                       "persist", "ttl", "cas", "scan", "getdel"))
CATCH_UP_LEFT = 1000             # dirty keys below which the fence goes up
CATCH_UP_ROUNDS = 20             # ... or after this many rounds
EXIT_FAILED = 2                  # the move was called off


class Failed(Exception):
    """The move cannot go on; the message says why."""


def progress_key(cluster: str) -> bytes:
    return root(cluster) + b"progress"


class Mover:
    def __init__(self, cfg: Config, etcd: Etcd, move: dict) -> None:
        self.cfg, self.etcd, self.move = cfg, etcd, move
        self.shard = int(move["shard"])
        self.id = str(move.get("id"))             # every op on the source carries it
        self.path = cfg.shard_dir(self.shard)
        self.client = Client(cfg.endpoint, timeout=30.0, retries=0, discover=False)
        self.keys = self.bytes = 0
        self.t0 = time.monotonic()
        self.said = 0.0
        self.seen: tuple[float, int] | None = None   # (when, the source's client ops)
        self.gentle = False

    # -- the source, through the router --------------------------------------------
    def submit(self, op: list) -> int:
        return self.client.submit([[SHARD, self.shard, op]])

    def collect(self, rid: int) -> Any:
        got = self.client.collect(rid)
        result = got[0] if type(got) is list else got
        if type(result) is ErrorReply:
            raise Failed("shard %d on %s: %s" % (self.shard, self.move["from"], result.message))
        return result

    def ask(self, op: list) -> Any:
        return self.collect(self.submit(op))

    # -- the copy here ------------------------------------------------------------------
    def fresh_folder(self) -> Any:
        import plyvel
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path)
        _mark(self.path, IMPORTING)
        return plyvel.DB(self.path, create_if_missing=True)

    def apply(self, db: Any, flat: list, sync: bool = False) -> None:
        """Entries (key, value|nil, ...) as the source keeps them; an expiring
        value's expiry index entry is made anew, as MOVE_IMPORT does."""
        from ..shardworker.encoding import index_entry
        with db.write_batch(sync=sync) as wb:
            put = wb.put
            pairs = iter(flat)
            for key, value in zip(pairs, pairs):
                if value is None:
                    wb.delete(key)
                    continue
                put(key, value)
                index = index_entry(key, value)
                if index is not None:
                    put(index, b"")
        self.keys += len(flat) // 2

    def busy(self) -> bool:
        """Whether clients use the source shard (more than ``BUSY_OPS`` ops/s,
        looked at twice a second): a page holds the source's loop, and a
        client's op waits behind it."""
        now = time.monotonic()
        if self.seen is not None and now - self.seen[0] < 0.5:
            return self.gentle
        ops = self.ask([protocol.STATS]).get("ops") or {}
        count = sum(n for name, n in ops.items() if name in _DATA_OPS)
        if self.seen is not None:
            self.gentle = (count - self.seen[1]) / (now - self.seen[0]) > BUSY_OPS
        self.seen = (now, count)
        return self.gentle

    def copy(self, db: Any) -> None:
        """Page the snapshot here from both ends at once (two pages asked for
        at all times, so the source never waits on this process): forward from
        the first key, backward from the last, until the lanes meet (a page
        past the meeting point only writes the same entries again). While
        clients use the shard, one lane of small pages and a pause after
        each, so that their ops wait ~10 ms at worst and the copy takes about
        a quarter of the source's time."""
        top: bytes | None = None         # the forward lane's last key (None: not begun)
        bottom: bytes | None = None      # the backward lane's
        ends = [False, False]            # a lane reached its end of the snapshot
        asked: dict[int, tuple[int, float]] = {}   # request id -> (lane, when)
        for lane in (0, 1):
            asked[self.submit([MOVE_READ, None, PAGE_KEYS, PAGE_BYTES, lane == 1, self.id])] = \
                (lane, time.monotonic())
        while asked:
            rid = min(asked)             # the oldest first
            lane, t = asked.pop(rid)
            groups, last = self.collect(rid)
            took = time.monotonic() - t
            if last is None:
                ends[lane] = True
            elif lane == 0:
                top = last
            else:
                bottom = last
            met = ends[0] or ends[1] or (top is not None and bottom is not None
                                         and top >= bottom)
            gentle = not met and self.busy()
            if not met and not gentle:   # read while this one is written
                asked[self.submit([MOVE_READ, last, PAGE_KEYS, PAGE_BYTES, lane == 1,
                                   self.id])] = \
                    (lane, time.monotonic())
            for i in range(0, len(groups), 3):
                self.apply(db, unpack_blob(groups[i + 2]))
                self.bytes += len(groups[i + 2])
            self.report("copy")
            _stall("copy")
            if gentle and not asked:     # one lane, small pages, a pause after each
                time.sleep(YIELD * took)
                asked[self.submit([MOVE_READ, last, PAGE_KEYS, GENTLE_BYTES, lane == 1,
                                   self.id])] = \
                    (lane, time.monotonic())

    def catch_up(self, db: Any, until: int) -> int:
        """Take dirty keys until at most ``until`` are left; how many are."""
        left = -1
        for _ in range(CATCH_UP_ROUNDS if until else 1_000_000):
            flat, left = self.ask([MOVE_DIRTY, PAGE_KEYS, PAGE_BYTES, self.id])
            self.apply(db, [x for i, x in enumerate(flat) if i % 3])   # drop the targets
            self.bytes += sum(len(x) for x in flat[2::3] if x)
            if left <= until:
                break
        return left

    def report(self, state: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.said < 1.0:
            return
        self.said = now
        elapsed = max(now - self.t0, 1e-6)
        try:
            self.etcd.put(progress_key(self.cfg.cluster or ""), json.dumps(
                {"shard": self.shard, "to": self.move["to"], "state": state, "keys": self.keys,
                 "bytes": self.bytes, "seconds": round(elapsed, 2),
                 "mb_s": round(self.bytes / elapsed / 1e6, 1)}).encode())
        except EtcdError:
            pass                                   # progress only

    # -- the steps ----------------------------------------------------------------------
    def arm(self) -> None:
        """Before a try: change the topology (the move's ``attempt``), so that a
        commit of an earlier try still in flight in etcd (its answer timed out)
        fails its compare-and-swap rather than landing after this try began."""
        def edit(t: Topology) -> None:
            if t.move is None or not is_move(t, self.move, "copy"):
                raise TopologyError("the move of shard %d is no longer being copied"
                                    % self.shard)
            t.move["attempt"] = int(t.move.get("attempt", 0)) + 1
        Topology.change(self.etcd, self.cfg.cluster or "", edit)

    def run_copy(self) -> None:
        cluster = self.cfg.cluster or ""
        log.info("moving shard %d from %s to %s", self.shard, self.move["from"], self.move["to"])
        try:
            self.ask([MOVE_ABORT, self.id])         # this move's earlier attempt, if any
            db = self.fresh_folder()
            try:
                self.ask([MOVE_BEGIN, -1, 0, self.id])
                self.copy(db)
                self.catch_up(db, CATCH_UP_LEFT)
                if os.environ.get("FLIN_TEST_MOVE_NO_FENCE") != "1":   # tests break it once
                    self.ask([MOVE_FENCE, self.id])
                    _stall("fenced")
                    self.catch_up(db, 0)
                    _stall("caught_up")
                    if self.ask([MOVE_FENCE, self.id]) != 0:   # still this move, still fenced
                        raise Failed("the source took writes after its last catch-up")
                self.apply(db, [], sync=True)
            finally:
                db.close()
            _fsync_tree(self.path)
        except Exception as exc:                    # (anything: the try is counted)
            if not isinstance(exc, (Failed, errors.FlinError, OSError)):
                log.exception("moving shard %d: unexpected failure", self.shard)
            self.call_off(str(exc) or type(exc).__name__)
            raise Failed(str(exc)) from None
        try:   # an unclear answer (a timeout) is not a "no": the mover starts again and reads
            Topology.change(self.etcd, cluster, lambda t: commit_move(t, self.move))
        except TopologyError as exc:                # called off meanwhile (a drain)
            self.call_off(str(exc))
            raise Failed(str(exc)) from None
        log.info("shard %d: every entry is here (%d, %.1f MB in %.1fs): committed", self.shard,
                 self.keys, self.bytes / 1e6, time.monotonic() - self.t0)

    def call_off(self, why: str) -> None:
        """Before the commit: the source serves on, the copy here goes. Only once
        etcd confirms that the topology does not name this node for it."""
        log.warning("moving shard %d to %s: %s; calling it off", self.shard, self.move["to"], why)
        topo, _ = Topology.read(self.etcd, self.cfg.cluster or "")
        if topo.placement[self.shard] == self.cfg.node:
            raise Failed("the move was committed meanwhile: finishing it instead")
        try:
            self.ask([MOVE_ABORT, self.id])
        except (Failed, errors.FlinError):
            pass                                    # a source that is gone has no move
        if os.path.exists(os.path.join(self.path, IMPORTING)):
            shutil.rmtree(self.path, ignore_errors=True)
        time.sleep(min(10.0, 1.0 + 2.0 * int(self.move.get("tries", 0))))   # not in a burst
        try:
            Topology.change(self.etcd, self.cfg.cluster or "",
                            lambda t: fail_move(t, self.move, why))
        except (EtcdError, TopologyError) as exc:
            log.warning("moving shard %d: the failure is not recorded (%s); the mover "
                        "starts again", self.shard, exc)

    def run_switch(self, epoch: int) -> None:
        _stall("committed")
        if os.path.exists(os.path.join(self.path, IMPORTING)):
            os.unlink(os.path.join(self.path, IMPORTING))
            _fsync_dir(self.path)
        try:
            self.client.timeout = 5.0
            self.ask([MOVE_SWITCH, -1, epoch, self.id])
        except (Failed, errors.FlinError) as exc:
            # the source is gone or cut off: it stays fenced (durably), serving no key,
            # and hands itself off once its node view shows the commit
            log.info("shard %d: the source did not take the hand-off (%s)", self.shard, exc)
        Topology.change(self.etcd, self.cfg.cluster or "",
                        lambda t: finish_move(t, self.move))
        self.report("done", force=True)
        log.info("shard %d now lives on %s (epoch %d)", self.shard, self.move["to"], epoch)

    def close(self) -> None:
        self.client.close()


def _stall(step: str) -> None:
    """Tests: ``FLIN_TEST_MOVE_STALL=STEP:SECONDS`` sleeps at ``step`` (``copy``:
    after each page; ``fenced``; ``caught_up``: after the last catch-up;
    ``committed``), for a kill to land there."""
    stall = os.environ.get("FLIN_TEST_MOVE_STALL", "")
    if stall.startswith(step + ":"):
        time.sleep(float(stall.split(":")[1]))


def _mark(folder: str, name: str) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write("%d\n" % os.getpid())
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(path)
    _fsync_dir(os.path.dirname(path))


def run(cfg: Config, expected: str | None = None) -> int:
    """The mover process's main: do this node's part of the move in the
    topology (the one with id ``expected``, if given), if it has one. 0: done
    (or nothing to do); ``EXIT_FAILED``: called off; anything else: the
    supervisor starts it again."""
    from .agent import options
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    etcd = Etcd(options(cfg))
    try:
        topo, _ = Topology.read(etcd, cfg.cluster or "")
        move = topo.move
        if move is None or move["to"] != cfg.node or \
                (expected is not None and move.get("id") != expected):
            return 0
        mover = Mover(cfg, etcd, move)
        try:
            if move["state"] == "copy":
                try:
                    mover.arm()
                except TopologyError:          # it moved on meanwhile: read again
                    return 1
                try:
                    mover.run_copy()
                except Failed as exc:
                    return 1 if "committed meanwhile" in str(exc) else EXIT_FAILED
                topo, _ = Topology.read(etcd, cfg.cluster or "")
                move = topo.move or {}
                mover.move = move
            if move.get("state") == "switch" and move.get("to") == cfg.node:
                mover.run_switch(int(move["epoch"]))
        finally:
            mover.close()
        return 0
    except (EtcdError, TopologyError) as exc:
        log.warning("mover: %s; trying again", exc)
        return 1
    finally:
        etcd.close()
