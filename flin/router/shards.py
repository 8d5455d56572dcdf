"""The router's side of its shards: the outbox of each, the batches in
flight to it, what its worker answers, and whether it is up (``Shards``, the
base of ``loop.Router``; the loop calls it, it calls back ``deliver``).

A shard is **stalled** when it has batches in flight and the router has
heard nothing from it for ``shard_timeout``: no reply, no part of one (a
worker answers big values in parts, ``shardworker.worker``), not a byte of
a frame being read (``links.heard``), and the clock starts when the first
batch goes out. So a worker busy with 64 MiB values is making progress, and
a SIGSTOPped one is found within about ``shard_timeout``. A stalled shard's
batches fail (OutcomeUnknown), its queued ops fail (ShardUnavailable), and
its new ops fail fast until it answers a heartbeat again.

Bytes of values queued for shards and in flight to them are counted
(``out_bytes``, ``queued_bytes``): the router refuses an op past them with
``Overloaded`` (``Router.route``), so no batch it builds comes near the
link's 4 GiB frame limit.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from .. import errors, protocol
from ..config import Config
from ..protocol import PING, ErrorReply
from ..ring import Ring
from .pending import Heartbeat

log = logging.getLogger("flin.router")

UNKNOWN, UP, DOWN, STALLED = "unknown", "up", "down", "stalled"
MOVED = errors.Moved.code
HEARTBEAT_S = 1.0        # ping a shard not heard from for this long


def error(cls: type[errors.ServerError], msg: str) -> ErrorReply:
    return ErrorReply(cls.code, msg)


class Shards:
    """Per shard: state, outbox, batches in flight; what fails when a shard does."""

    links: Any                   # the router's end of the worker links (``links.py``)
    stopping: bool
    cache: Any                   # the read cache (``readcache.ReadCache``) or None
    peers: bool                  # other routers share these shards (``--routers`` > 1)

    def __init__(self, cfg: Config, ring: Ring, ready_fd: int | None) -> None:
        self.cfg, self.ring = cfg, ring
        n = self.slots = ring.shards             # shards linked (a reshard: both rings')
        self.ready_fd = ready_fd
        self.ready_shards: set[int] | None = None   # cluster mode: these up make us ready
        # cluster mode: shards changing nodes -> until when a batch that finds
        # no worker is sent again (as after Moved) rather than refused
        self.handoff: dict[int, float] = {}
        self.state = [UNKNOWN] * n
        self.heard = [0.0] * n                   # last time the shard was heard from
        self.out_ops: list[list] = [[] for _ in range(n)]
        self.out_sinks: list[list] = [[] for _ in range(n)]
        self.out_bytes = [0] * n                 # bytes of values in the outbox
        self.queued_bytes = 0                    # out_bytes, plus the bytes of batches in flight
        # batch id -> [sinks, how many answered by parts so far, bytes of its values, ops]
        self.inflight: list[dict[int, list]] = [{} for _ in range(n)]
        # a random start, so that a late reply to a dead router's batch can
        # never match a batch of this one
        self.next_bid = 1 + int.from_bytes(os.urandom(6), "big")

    def deliver(self, target: Any, slot: int, value: Any) -> None:
        raise NotImplementedError

    def on_moved(self, op: list, target: Any, slot: int) -> None:
        raise NotImplementedError

    def grow(self, n: int) -> None:
        """Link to ``n`` shards (a reshard's new ones connect as they start)."""
        more = n - len(self.state)
        if more > 0:
            self.state += [UNKNOWN] * more
            self.heard += [time.monotonic()] * more
            self.out_ops += [[] for _ in range(more)]
            self.out_sinks += [[] for _ in range(more)]
            self.out_bytes += [0] * more
            self.inflight += [{} for _ in range(more)]
            self.links.grow(n)
            if self.cache is not None:
                self.cache.grow(n)
        self.slots = max(self.slots, n)

    def fail_all(self, sinks: list, error: ErrorReply) -> None:
        for target, slot in sinks:
            self.deliver(target, slot, error)

    def flush(self, shard: int) -> None:
        """Send the shard its outbox as one batch, if a slot is free."""
        ops = self.out_ops[shard]
        if not ops or len(self.inflight[shard]) >= self.cfg.shard_depth:
            return
        sinks, size = self.out_sinks[shard], self.out_bytes[shard]
        self.out_ops[shard], self.out_sinks[shard], self.out_bytes[shard] = [], [], 0
        self.send_batch(shard, ops, sinks, size)

    def send_batch(self, shard: int, ops: list, sinks: list, size: int = 0) -> None:
        bid = self.next_bid
        self.next_bid += 1
        if not self.links.send(shard, protocol.encode(bid, ops)):
            if self.handoff and self.handoff.get(shard, 0.0) > time.monotonic():
                self.queued_bytes -= size
                for (target, slot), op in zip(sinks, ops):   # the new node's worker comes
                    self.on_moved(op, target, slot)
                return
            if self.state[shard] == UP:
                log.warning("shard %d is not connected", shard)
            self.state[shard] = DOWN
            self.queued_bytes -= size
            self.fail_all(sinks, error(errors.ShardUnavailable,
                                      "shard %d is not connected" % shard))
            return
        batches = self.inflight[shard]
        if not batches:                # the silence that counts starts now
            self.heard[shard] = time.monotonic()
        batches[bid] = [sinks, 0, size, ops]

    def on_shard_message(self, shard: int, frame: bytes) -> None:
        try:
            bid, results, more = protocol.decode_reply(frame)
            pid = results[1] if bid == protocol.HELLO_ID else None
        except Exception:
            log.error("malformed message from shard %d", shard)
            return
        self.heard[shard] = time.monotonic()
        if bid == protocol.WRITTEN_ID:   # keys another router wrote (readcache.py)
            if self.cache is not None and type(results) is list:
                self.cache.forget(shard, results)
            return
        if bid == protocol.HELLO_ID:
            if self.inflight[shard]:  # a new incarnation: what the old one held is unknown
                self._fail_inflight(shard, "shard %d restarted" % shard)
            if self.peers and self.cache is not None:   # it may have taken other routers' writes
                self.cache.forget_shard(shard, self.ring.shard)
            log.debug("shard %d up (pid %s)", shard, pid)
            self._mark_up(shard)
            self.flush(shard)        # ops that queued meanwhile go now, not at the next ping
            return
        batches = self.inflight[shard]
        entry = batches.get(bid) if more else batches.pop(bid, None)
        self._mark_up(shard)
        if entry is None:  # already failed by timeout; its outcome was reported unknown
            return
        sinks, done, ops = entry[0], entry[1], entry[3]
        if done:                       # parts came before: these results are for the rest
            sinks, ops = sinks[done:], ops[done:]
        if type(results) is not list or (len(results) > len(sinks) if more
                                         else len(results) != len(sinks)):
            err = results if type(results) is ErrorReply else error(
                errors.InternalError, "shard %d answered a malformed batch" % shard)
            if more:
                batches.pop(bid)
            self.queued_bytes -= entry[2]
            self.fail_all(sinks, err)
        else:
            deliver = self.deliver
            for (target, slot), value, op in zip(sinks, results, ops):
                if type(value) is ErrorReply and value.code == MOVED:   # resharding.py
                    self.on_moved(op, target, slot)
                    continue
                deliver(target, slot, value)
            if more:
                entry[1] = done + len(results)
                return
            self.queued_bytes -= entry[2]
        self.flush(shard)

    def on_shard_lost(self, shard: int) -> None:
        """The worker's link closed (it died, or is restarting)."""
        if self.state[shard] == UP:
            log.warning("shard %d disconnected", shard)
        self.state[shard] = DOWN
        self._fail_inflight(shard, "shard %d disconnected" % shard)
        self.flush(shard)  # what queued meanwhile: refused at once (not connected)

    def _mark_up(self, shard: int) -> None:
        if self.state[shard] != UP:
            self.state[shard] = UP
            if self.ready_fd is not None and (
                    all(s == UP for s in self.state) if self.ready_shards is None
                    else all(self.state[s] == UP for s in self.ready_shards)):
                os.write(self.ready_fd, b"R")
                os.close(self.ready_fd)
                self.ready_fd = None

    def _fail_inflight(self, shard: int, why: str) -> None:
        batches = self.inflight[shard]
        self.inflight[shard] = {}
        err = error(errors.OutcomeUnknown, why + "; outcome unknown")
        for sinks, done, size, _ in batches.values():
            self.queued_bytes -= size
            self.fail_all(sinks[done:] if done else sinks, err)

    def tick(self, now: float) -> None:
        timeout = self.cfg.shard_timeout
        links = self.links
        for shard in range(self.slots):
            batches = self.inflight[shard]
            if batches:
                # silence, not slowness: a frame, a part of one or a byte read is progress
                heard = max(self.heard[shard], links.heard(shard, now))
                if now - heard > timeout:
                    log.warning("shard %d was silent for %.1fs with batches in flight: "
                                "marked stalled", shard, timeout)
                    self.state[shard] = STALLED
                    self._fail_inflight(shard, "shard %d did not answer in %.1fs" % (shard, timeout))
                    self._fail_queued(shard)
            elif now - self.heard[shard] > HEARTBEAT_S and not self.stopping:
                self.heard[shard] = now  # one ping per interval
                self.send_batch(shard, [[PING]], [(Heartbeat(), 0)])

    def _fail_queued(self, shard: int) -> None:
        sinks = self.out_sinks[shard]
        self.queued_bytes -= self.out_bytes[shard]
        self.out_ops[shard], self.out_sinks[shard], self.out_bytes[shard] = [], [], 0
        self.fail_all(sinks, error(errors.ShardUnavailable, "shard %d is stalled" % shard))

    def busy(self) -> bool:
        return any(self.inflight) or any(self.out_ops)
