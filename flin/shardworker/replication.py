"""A replicated shard's copies: primary-backup (``../shared/design/TOPOLOGY.md``).

Each copy of a shard that has replicas binds a ROUTER socket, its
replication endpoint (``Config.repl_endpoint``: CURVE with the backend keys,
admitted by ``zapgate``). etcd names the primary and its term (the node view
carries them: ``flin.cluster.replicas``); every other copy is a follower and
links a DEALER, named by its node, to the primary's endpoint.

- **Primary**: every commit (``Store._commit``) is one batch numbered
  ``seq``; the batch writes ``META`` (term, seq, the terms' history) in the
  same LevelDB write batch, goes to every follower in step, and is
  answered only once ``needed - 1`` followers acknowledged it (``acks``:
  ``majority`` or ``one``), within ``ACK_WAIT_S``. Past that the writes
  answer ``OutcomeUnknown`` and the shard refuses everything (reads too:
  they could see a write that a failover will drop) until enough followers
  have caught up.
- **Follower**: applies a batch only if it is the next one and follows the
  entry it has (``seq - 1`` of term ``prev``, Raft's log matching), with
  ``META`` in the same write batch: exactly once across restarts. Anything
  else and it says ``sub`` again with where it stands; the primary sends
  what it kept of its log since then (``LOG_BYTES``), or a snapshot copy of
  the whole shard when the follower is too far behind or its tail is not
  the primary's (a returning primary's unacknowledged writes: discarded).
  A copy that holds no complete snapshot yet (a new or wiped follower) is
  not a voter: ``pos`` says so and elections do not count it.
- Terms fence: a batch of a lower term than a follower knows is answered
  ``stale``, and a primary told of a higher term stops being primary.

Messages are msgpack arrays: F->P ``["sub", term, last_term, seq, voter, in_step]``,
``["ack", term, seq, last_term]``, ``["snapok", n]``; P->F ``["b", term, seq, prev,
items]``, ``["snap", term, n, items]``, ``["snapend", term, seq, history]``,
``["stale", term]``; anyone -> copy ``["pos"]`` -> ``["pos", term,
last_term, seq, voter, role]`` (``ask_positions``).
"""
from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any, Callable

import zmq

from .. import errors, protocol
from ..config import Config
from ..curve import AUTHORIZED, BACK_SERVER
from ..protocol import ErrorReply
from ..zapgate import BACK_DOMAIN, Gatekeeper
from .following import HISTORY_KEPT, META, Follower, Following, _ints, _pack, _unpack

log = logging.getLogger("flin.replica")

ACK_WAIT_S = 2.0            # a write waits this long for its acknowledgements
LOG_BYTES = 64 << 20        # of recent batches the primary keeps for followers catching up
SNAP_BYTES = 1 << 20        # of entries per snapshot chunk
SNAP_WINDOW = 4             # snapshot chunks in flight to one follower
SUB_EVERY_S = 0.5           # a follower not in step says where it stands this often
SNAP_STALL_S = 5.0          # a snapshot copy silent this long is asked for again
_NO_SHIP = os.environ.get("FLIN_TEST_REPL_NO_SHIP") == "1"   # acknowledge unreplicated writes



class Replica(Following):
    """One copy's part in its shard's replication (see the module docstring)."""

    def __init__(self, cfg: Config, store: Any, me: str) -> None:
        self.cfg, self.store, self.shard, self.me = cfg, store, store.shard, me
        raw = store.db.get(META)
        meta = _unpack(raw) if raw else {}
        self.last_term = int(meta.get("t", 0))      # term of the last batch held
        self.seq = int(meta.get("s", 0))            # the last batch held
        self.history: list[list[int]] = meta.get("h", [])   # [term, first seq], ascending
        self.voter = bool(meta.get("v", True))      # (a new follower's folder says False)
        self.term = self.last_term                  # the highest term known
        self.role = "follower"
        self.promoted = -1                          # the term we were last made primary at
        self.primary: str | None = None             # the primary's node name
        self.replicas: list[str] = []
        self.need = 1                               # copies a write must be on, ours included
        self.followers: dict[bytes, Follower] = {}
        self.log: collections.deque = collections.deque()   # (seq, frame)
        self.log_bytes = 0
        self.behind = 0                             # a write not acknowledged in time: its seq
        self.acked_term = -1                        # the last term we acknowledged writes in
        self.held: collections.deque = collections.deque()   # (seq, since, router, answer)
        self.upstream: Any = None                   # a follower's DEALER to the primary
        self.sub_at = 0.0
        self.in_step = False
        self.snap_n = -1                            # a snapshot being received: next chunk
        self.snap_id, self.snap_heard = 0, 0.0      # ... which copy, and when it last moved
        self.on_role: Callable[[str, int], None] | None = None   # the worker's links follow
        self.ctx = zmq.Context(1)
        self.gate = Gatekeeper(self.ctx)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.SNDHWM, 10_000)
        if cfg.backend_keys:
            self.gate.serve(self.sock, os.path.join(cfg.backend_keys, BACK_SERVER + ".key_secret"),
                            os.path.join(cfg.backend_keys, AUTHORIZED), BACK_DOMAIN)
        self.sock.bind(cfg.repl_endpoint(self.shard))

    # -- the view: who is primary ------------------------------------------------------
    def follow_view(self, view: dict) -> None:
        s = str(self.shard)
        reps = view.get("replicas") or []
        self.replicas = list(reps[self.shard]) if self.shard < len(reps) else []
        self.need = _needed(len(self.replicas), view.get("acks") or "majority")
        prim = (view.get("primaries") or {}).get(s)
        node, term = (prim[0], int(prim[1])) if prim else (None, 0)
        if term > self.term:
            self.term = term
        if node == self.me and term == self.term and self.voter:
            if self.role != "primary" or self.promoted != term:   # (again, at a new term)
                self._promote(term)
            return
        if self.role == "primary":
            self._step_down("etcd names %s primary (term %d)" % (node, term))
        if node != self.primary:
            self.primary = node
            self._connect(view, node)

    def _promote(self, term: int) -> None:
        self._close_upstream()
        self.role, self.primary, self.promoted = "primary", self.me, term
        self.history = ([h for h in self.history if h[1] <= self.seq]
                        + [[term, self.seq + 1]])[-HISTORY_KEPT:]
        self.followers.clear()
        self.behind = 0
        log.warning("shard %d: primary for term %d at seq %d", self.shard, term, self.seq)
        # a first batch of this term: nothing is answered until it is on enough
        # copies, so no entry of an earlier term counts before (Raft's no-op)
        with self.store.db.write_batch(sync=self.store.sync) as wb:
            seq = self.stamp(wb)
        self.replicate([], seq)
        if self.on_role is not None:
            self.on_role("primary", term)

    def _step_down(self, why: str) -> None:
        log.warning("shard %d: no longer primary (term %d): %s", self.shard, self.term, why)
        self.role, self.promoted = "follower", -1
        self.followers.clear()
        self.log.clear()
        self.log_bytes = 0
        self.primary = None
        if self.on_role is not None:
            self.on_role("follower", self.term)

    def sockets(self) -> list:
        return [self.sock] + ([self.upstream] if self.upstream is not None else [])

    # -- the data path: what the store asks ---------------------------------------------
    def refuse(self, op: list, writes: bool, reading_replica: bool) -> Any:
        """None, or the error refusing ``op`` on this copy now."""
        store = self.store
        if reading_replica:
            if writes:
                return store.error(errors.BadRequest, "a replica read carried a write")
            if not self.voter:
                return store.error(errors.ShardUnavailable, "shard %d's copy on %s is still "
                                   "copying from its primary" % (self.shard, self.me))
            return None
        if self.role != "primary":
            return store.error(errors.Moved, "shard %d: %s is not its primary (term %d)"
                               % (self.shard, self.me, self.term))
        until = store.writable_until
        if until is not None and time.monotonic() > until:
            return store.error(errors.ShardUnavailable, store.unwritable_why)
        if self.behind and self._majority() < self.behind:
            return store.error(errors.ShardUnavailable, "shard %d: waiting for a majority "
                               "of its replicas to acknowledge seq %d" % (self.shard, self.behind))
        self.behind = 0
        return None

    def stamp(self, wb: Any) -> int:
        """A commit's number, with ``META`` put in its write batch."""
        self.seq += 1
        self.last_term = self.term
        wb.put(META, self._meta())
        return self.seq

    def replicate(self, items: list, seq: int) -> None:
        """Send the committed batch ``seq`` to the followers in step. Its
        answers wait in ``hold`` until enough copies acknowledged it."""
        prev = self.term_at(seq - 1)
        frame = _pack(["b", self.term, seq, prev, items])
        self.log.append((seq, frame))
        self.log_bytes += len(frame)
        # a follower taking a copy needs the batches after it: kept, up to 4x
        pinned = min((f.snap[2] for f in self.followers.values() if f.snap is not None),
                     default=seq)
        while len(self.log) > 1 and self.log_bytes > LOG_BYTES and (
                self.log[0][0] <= pinned or self.log_bytes > 4 * LOG_BYTES):
            self.log_bytes -= len(self.log.popleft()[1])
        if _NO_SHIP:                     # tests break replication on purpose
            return
        for f in self.followers.values():
            if f.acked >= 0 and f.snap is None:
                self._send(f.name, frame)

    def holds(self) -> bool:
        """Whether an answer given now must wait (a batch not yet on enough copies)."""
        return self.role == "primary" and (bool(self.held) or self._majority() < self.seq)

    def hold(self, router: int, reply: bytes) -> None:
        """Keep an answer until every batch committed so far is on enough
        copies: a read as well as a write, so that nothing a failover could
        drop is ever seen (the commit is pipelined: the shard goes on meanwhile)."""
        self.held.append((self.seq, time.monotonic(), router, reply))

    def release(self) -> list[tuple[int, bytes]]:
        """The answers whose batches are now on enough copies; past
        ``ACK_WAIT_S``, or past the lease, or no longer primary, they become
        errors (``OutcomeUnknown``) and the shard refuses until it catches up."""
        out: list[tuple[int, bytes]] = []
        held = self.held
        if not held:
            return out
        done = self._majority()
        now = time.monotonic()
        until = self.store.writable_until
        lost = self.role != "primary" or (until is not None and now > until)
        while held:
            seq, t0, router, reply = held[0]
            if seq <= done and not lost:
                self._acked(seq)
            elif lost or now - t0 > ACK_WAIT_S:
                self.behind = max(self.behind, seq)
                reply = protocol.encode(protocol.request_id_of(reply), ErrorReply(
                    errors.OutcomeUnknown.code, "shard %d: fewer than %d of its copies "
                    "acknowledged it in time%s: outcome unknown" % (
                        self.shard, self.need, "" if not lost else " (no longer primary)")))
            else:
                break
            held.popleft()
            out.append((router, reply))
        return out

    def _acked(self, seq: int) -> None:
        if self.acked_term != self.term:    # the fault tests check one primary per term
            self.acked_term = self.term
            log.info("shard %d: acknowledging writes in term %d (from seq %d)",
                     self.shard, self.term, seq)

    def _majority(self) -> int:
        """The last seq held by enough copies (``need``, ours included)."""
        if self.need <= 1 or _NO_SHIP:
            return self.seq
        acks = sorted((f.acked for n, f in self.followers.items()
                       if n.decode() in self.replicas), reverse=True)
        return acks[self.need - 2] if len(acks) >= self.need - 1 else -1

    def _send(self, name: bytes, frame: bytes) -> None:  # to a follower
        try:
            self.sock.send_multipart([name, frame], zmq.NOBLOCK)
        except zmq.ZMQError:         # gone, or too far behind: it says "sub" again
            pass

    # -- messages ---------------------------------------------------------------------
    def on_message(self) -> None:
        """Handle what arrived on the replication sockets (no waiting)."""
        for _ in range(1000):
            try:
                name, data = self.sock.recv_multipart(zmq.NOBLOCK)[-2:]
            except zmq.Again:
                break
            except ValueError:
                continue
            self._from_below(name, data)
        up = self.upstream
        for _ in range(1000):
            if up is None or self.upstream is not up:
                break
            try:
                data = up.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._from_primary(data)

    def _from_below(self, name: bytes, data: bytes) -> None:
        try:
            msg = _unpack(data)
            kind = msg[0]
            if kind == "pos":
                self._send(name, _pack(["pos", self.term, self.last_term, self.seq,
                                        self.voter, self.role]))
                return
            if self.role != "primary" or name.decode(errors="replace") not in self.replicas:
                self._send(name, _pack(["stale", self.term]))
                return
            f = self.followers.get(name)
            if f is None:
                f = self.followers[name] = Follower(name)
            if kind == "sub":
                term, last_term, seq = _ints(msg[1:4])
                if msg[5] and f.snap is None and f.acked >= 0:    # in step: a heartbeat
                    f.acked = max(f.acked, min(seq, self.seq))
                else:
                    self._on_sub(f, term, last_term, seq, bool(msg[4]))
            elif kind == "ack":
                term, seq, last_term = _ints(msg[1:4])
                if term > self.term:     # (not taken as ours: only etcd's view raises it)
                    self._step_down("follower %s knows term %d" % (name.decode(), term))
                elif f.snap is None and f.acked >= 0:
                    f.acked = max(f.acked, min(seq, self.seq))
                else:                    # a copy just ended, or a follower we did not know
                    self._on_sub(f, term, last_term, seq)
            elif kind == "snapok":
                sid, n = _ints(msg[1:3])
                if f.snap is not None and sid == f.snap_id and n < f.sent:
                    f.snapacked = max(f.snapacked, n + 1)
                    self.pump(f)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            log.warning("shard %d: a malformed replication message from %r: %s", self.shard,
                        name[:64], exc)

    def _on_sub(self, f: Follower, term: int, last_term: int, seq: int,
                voter: bool = True) -> None:
        if term > self.term:
            self._step_down("follower %s knows term %d" % (f.name.decode(), term))
            return
        if f.snap is not None and f.snap[0] is not None:
            f.snap[0].close()
        f.snap = None
        first = self.log[0][0] if self.log else self.seq + 1
        if voter and seq <= self.seq and self.term_at(seq) == last_term and seq + 1 >= first:
            f.acked, f.snapdone = seq, False      # what it lacks, from the log
            for s, frame in self.log:
                if s > seq:
                    self._send(f.name, frame)
            return
        log.info("shard %d: follower %s at seq %d (term %d) is not in our log (seq %d): "
                 "sending a copy", self.shard, f.name.decode(), seq, last_term, self.seq)
        f.acked, f.sent, f.snapacked, f.snapdone = -1, 0, 0, False
        f.snap_id = int.from_bytes(os.urandom(6), "big")
        f.snap = [self.store.db.snapshot(), None, self.seq]
        self.pump(f)

    def pump(self, f: Follower) -> None:
        """Send the next chunks of a snapshot copy, at most ``SNAP_WINDOW`` ahead;
        each names the copy (``snap_id``) and its place, and the end says how many."""
        while f.snap is not None and not f.snapdone and f.sent - f.snapacked < SNAP_WINDOW:
            snap, after, seq = f.snap
            items, size = [], 0
            it = snap.iterator() if after is None else \
                snap.iterator(start=after, include_start=False)
            for k, v in it:
                if k == META:
                    continue
                items.append([k, v])
                size += len(k) + len(v)
                if size >= SNAP_BYTES:
                    break
            it.close()
            if items:
                f.snap[1] = items[-1][0]
                self._send(f.name, _pack(["snap", self.term, f.snap_id, f.sent, items]))
                f.sent += 1
                if size >= SNAP_BYTES:
                    continue
            self._send(f.name, _pack(["snapend", self.term, f.snap_id, f.sent, seq,
                                      [h for h in self.history if h[1] <= seq] or
                                      self.history[:1]]))
            f.snapdone = True
            f.acked = -1
            snap.close()
            f.snap = [None, None, seq]

    def tick(self) -> None:
        """Background: a follower not in step says where it stands."""
        now = time.monotonic()
        if self.snap_n >= 0 and now - self.snap_heard > SNAP_STALL_S:
            log.warning("shard %d: the copy from %s stalled; asking again", self.shard,
                        self.primary)
            self.snap_n = -1
        if self.upstream is not None and self.snap_n < 0 and now >= self.sub_at:
            # in step too, now and then: a primary that restarted learns of us
            self.sub_at = now + (SUB_EVERY_S if not self.in_step else 2 * SUB_EVERY_S)
            self._up(["sub", self.term, self.last_term, self.seq, self.voter, self.in_step])

    def close(self) -> None:
        self._close_upstream()
        for f in self.followers.values():
            if f.snap is not None and f.snap[0] is not None:
                f.snap[0].close()
        self.sock.close(0)
        self.gate.stop()
        self.ctx.term()


def _needed(replicas: int, acks: str) -> int:
    return 1 if acks == "one" or replicas <= 1 else replicas // 2 + 1
