"""A replicated shard's follower side (``replication.py`` has the whole
protocol): its DEALER to the primary, the batches and snapshot chunks it
applies, and what an election asks every copy (``ask_positions``).

A follower applies a batch only if it is the next one and follows the entry
it holds (``seq - 1`` of term ``prev``: Raft's log matching), writing
``META`` in the same LevelDB write batch, so a batch is applied exactly once
across restarts. A snapshot copy first wipes the copy (which is then no
voter: an election does not count a copy that holds no complete snapshot),
then takes its chunks in order, and ends with ``META``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import msgpack
import zmq

from ..config import Config
from ..curve import backend_client_keys, secure_client

log = logging.getLogger("flin.replica")

META = b"\x00repl"          # the copy's (term, seq, history, voter); no data key starts with \x00
HISTORY_KEPT = 32           # terms remembered (term -> its first seq)
_pack = msgpack.packb
__all__ = ["META", "HISTORY_KEPT", "Follower", "Following", "_ints", "_pack", "_unpack",
           "ask_positions", "mark_new"]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, use_list=True, max_bin_len=1 << 27)


class Follower:
    """What the primary knows of one follower."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.acked = -1             # every batch up to this one it holds (-1: not in step)
        self.snap: Any = None       # a snapshot being sent: [plyvel snapshot, after key, seq]
        self.sent = self.snapacked = 0
        self.snap_id = 0
        self.snapdone = False


def _ints(values: list) -> list[int]:
    """Numbers from the network: ints only (``ValueError`` else)."""
    if any(type(v) is not int for v in values):
        raise ValueError("expected integers, got %r" % (values,))
    return list(values)



class Following:
    """The follower's half of ``replication.Replica`` (a mixin)."""

    cfg: Config
    store: Any
    shard: int
    me: str
    ctx: zmq.Context
    upstream: Any
    term: int
    last_term: int
    seq: int
    voter: bool
    history: list[list[int]]
    in_step: bool
    snap_n: int
    snap_id: int
    snap_heard: float
    sub_at: float
    primary: str | None
    log: Any

    def _meta(self) -> bytes:
        return _pack({"t": self.last_term, "s": self.seq, "h": self.history, "v": self.voter})

    def term_at(self, seq: int) -> int:
        """The term of our batch ``seq`` (0: before any)."""
        term = 0
        for t, first in self.history:
            if first <= seq:
                term = t
        return term

    def _connect(self, view: dict, node: str | None) -> None:
        self._close_upstream()
        info = (view.get("nodes") or {}).get(node or "") or {}
        if node is None or not info.get("advertise") or not info.get("repl_port"):
            return
        up = self.ctx.socket(zmq.DEALER)
        up.setsockopt(zmq.IDENTITY, self.me.encode())
        up.setsockopt(zmq.LINGER, 0)
        up.setsockopt(zmq.IMMEDIATE, 1)
        up.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        up.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        if self.cfg.backend_keys:
            secure_client(up, backend_client_keys(self.cfg.backend_keys))
        up.connect(self.cfg.repl_endpoint(self.shard, info["advertise"], int(info["repl_port"])))
        self.upstream, self.in_step, self.sub_at = up, False, 0.0
        self.snap_n = -1                # a copy under way from another primary is void

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close(0)
            self.upstream = None

    def _from_primary(self, data: bytes) -> None:
        try:
            msg = _unpack(data)
            kind, term = msg[0], msg[1]
            if type(term) is not int:
                raise ValueError("a term must be an integer")
            if term < self.term:
                self._up(["stale", self.term])
                return
            self.term = max(self.term, term)
            if kind == "b":
                self._batch(term, msg)
            elif kind in ("snap", "snapend"):
                self._snapshot(term, kind, msg)
            elif kind == "stale":
                self.in_step = False
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            log.warning("shard %d: a malformed replication message from %s: %s", self.shard,
                        self.primary, exc)

    def _batch(self, term: int, msg: list) -> None:
        seq, prev, items = msg[2], msg[3], msg[4]
        if type(seq) is not int or type(prev) is not int or type(items) is not list:
            raise ValueError("a batch is [b, term, seq, prev, items]")
        if seq <= self.seq and self.in_step:
            self._ack()
            return
        if seq != self.seq + 1 or prev != self.last_term or not self.voter:
            self.in_step = False
            return
        pairs = [(k, v) for k, v in items]
        if any(type(k) is not bytes or not (v is None or type(v) is bytes) for k, v in pairs):
            raise ValueError("a batch's items are [key, value or nil] of bytes")
        if term != self.last_term:
            self.history = (self.history + [[term, seq]])[-HISTORY_KEPT:]
        self.seq, self.last_term = seq, term
        store = self.store
        with store.db.write_batch(sync=store.sync) as wb:
            for k, v in pairs:
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)
            wb.put(META, self._meta())
        self.in_step = True
        self._ack()

    def _snapshot(self, term: int, kind: str, msg: list) -> None:
        """A chunk of a snapshot copy, or its end: taken only in order, of
        the copy under way (``snap_id``); the end only after every chunk."""
        sid, n = msg[2], msg[3]
        if type(sid) is not int or type(n) is not int:
            raise ValueError("a snapshot message names its copy and place")
        self.snap_heard = time.monotonic()
        store = self.store
        if kind == "snap":
            if n == 0:
                self._wipe()
                self.snap_id = sid
            elif sid != self.snap_id or n != self.snap_n:
                self.in_step, self.snap_n = False, -1    # a gap: start over (sub)
                return
            pairs = [(k, v) for k, v in msg[4]]
            if any(type(k) is not bytes or type(v) is not bytes for k, v in pairs):
                raise ValueError("a snapshot chunk's items are [key, value] of bytes")
            with store.db.write_batch(sync=False) as wb:
                for k, v in pairs:
                    wb.put(k, v)
            self.snap_n, self.snap_heard = n + 1, time.monotonic()
            self._up(["snapok", sid, n])
            return
        if n == 0 and self.snap_n < 0:                   # an empty shard: no chunk came
            self._wipe()
            self.snap_id = sid
        if sid != self.snap_id or self.snap_n != n:      # a chunk missing: start over
            self.in_step, self.snap_n = False, -1
            return
        seq, history = msg[4], msg[5]
        if type(seq) is not int or type(history) is not list:
            raise ValueError("a snapshot's end is [snapend, term, id, chunks, seq, history]")
        self.history = [[int(t), int(first)] for t, first in history]
        self.seq, self.last_term = seq, self.term_at(seq)
        self.voter, self.snap_n = True, -1
        with store.db.write_batch(sync=True) as wb:
            wb.put(META, self._meta())
        log.info("shard %d: copied from %s up to seq %d", self.shard, self.primary, self.seq)
        self.in_step = True
        self._ack()

    def _wipe(self) -> None:
        """Drop every entry before a snapshot copy: not a voter until it ends."""
        db = self.store.db
        self.voter, self.seq, self.last_term, self.history = False, 0, 0, []
        db.put(META, self._meta(), sync=True)
        wb, n = db.write_batch(), 0
        for k in db.iterator(include_value=False):    # (a snapshot of the keys: one pass)
            if k != META:
                wb.delete(k)
                n += 1
                if n % 10_000 == 0:
                    wb.write()
                    wb = db.write_batch()
        wb.write()
        self.snap_n = 0

    def _ack(self) -> None:
        self._up(["ack", self.term, self.seq, self.last_term])

    def _up(self, msg: list) -> None:
        try:
            if self.upstream is not None:
                self.upstream.send(_pack(msg), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


def mark_new(path_db: Any) -> None:
    """Make a new, empty folder a non-voting follower until its first copy."""
    path_db.put(META, _pack({"t": 0, "s": 0, "h": [], "v": False}), sync=True)


def ask_positions(cfg: Config, endpoints: dict[Any, str], timeout: float) -> dict[Any, list]:
    """Ask copies where they stand: ``{node: [term, last_term, seq, voter, role]}``
    for those that answered within ``timeout`` s."""
    ctx: zmq.Context = zmq.Context.instance()
    socks: dict[Any, Any] = {}
    out: dict[Any, list] = {}
    poller = zmq.Poller()
    for node, endpoint in endpoints.items():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if cfg.backend_keys:
            secure_client(s, backend_client_keys(cfg.backend_keys))
        s.connect(endpoint)
        s.send(_pack(["pos"]))
        socks[s] = node
        poller.register(s, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while len(out) < len(socks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for s, _ in poller.poll(int(left * 1000) + 1):
                try:
                    msg = _unpack(s.recv(zmq.NOBLOCK))
                    if msg[0] == "pos" and len(msg) == 6 and all(
                            type(v) is int for v in msg[1:4]) and type(msg[4]) is bool:
                        out[socks[s]] = msg[1:]
                except (zmq.Again, ValueError, IndexError, TypeError, KeyError):
                    pass
    finally:
        for s in socks:
            s.close(0)
    return out
