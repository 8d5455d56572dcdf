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
__all__ = ["META", "HISTORY_KEPT", "Following", "_pack", "_unpack", "ask_positions", "mark_new"]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, use_list=True, max_bin_len=1 << 27)


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

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close(0)
            self.upstream = None

    def _from_primary(self, data: bytes) -> None:
        try:
            msg = _unpack(data)
            kind, term = msg[0], int(msg[1])
        except Exception:
            return
        if term < self.term:
            self.upstream.send(_pack(["stale", self.term]), zmq.NOBLOCK)
            return
        self.term = max(self.term, term)
        store = self.store
        if kind == "b":
            seq, prev, items = int(msg[2]), int(msg[3]), msg[4]
            if seq <= self.seq and self.in_step:
                self._ack()
                return
            if seq != self.seq + 1 or prev != self.last_term or not self.voter:
                self.in_step = False
                return
            if term != self.last_term:
                self.history = (self.history + [[term, seq]])[-HISTORY_KEPT:]
            self.seq, self.last_term = seq, term
            with store.db.write_batch(sync=store.sync) as wb:
                for k, v in items:
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
                wb.put(META, self._meta())
            self.in_step = True
            self._ack()
        elif kind == "snap":
            n = int(msg[2])
            if n == 0:
                self._wipe()
            elif n != self.snap_n:
                self.in_step, self.snap_n = False, -1
                return
            with store.db.write_batch(sync=False) as wb:
                for k, v in msg[3]:
                    wb.put(k, v)
            self.snap_n = n + 1
            self._up(["snapok", n])
        elif kind == "snapend":
            if self.snap_n < 0 and self.voter:
                return
            self.history = [list(h) for h in msg[3]]
            self.seq, self.last_term = int(msg[2]), self.term_at(int(msg[2]))
            self.voter, self.snap_n = True, -1
            with store.db.write_batch(sync=True) as wb:
                wb.put(META, self._meta())
            log.info("shard %d: copied from %s up to seq %d", self.shard, self.primary, self.seq)
            self.in_step = True
            self._ack()
        elif kind == "stale":
            self.in_step = False

    def _wipe(self) -> None:
        """Drop every entry before a snapshot copy: not a voter until it ends."""
        db = self.store.db
        self.voter, self.seq, self.last_term, self.history = False, 0, 0, []
        db.put(META, self._meta(), sync=True)
        while True:
            keys = [k for k in db.iterator(include_value=False) if k != META][:10_000]
            if not keys:
                break
            with db.write_batch() as wb:
                for k in keys:
                    wb.delete(k)
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
                    if msg[0] == "pos":
                        out[socks[s]] = msg[1:]
                except (zmq.Again, ValueError, IndexError, TypeError):
                    pass
    finally:
        for s in socks:
            s.close(0)
    return out
