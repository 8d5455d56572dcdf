"""The router: one process between clients and shard workers.

A ZeroMQ ROUTER socket for clients (``sockets.frontend_socket``) and a
link to each worker (``links.py``). One loop, no threads:

1. drain worker replies and scatter each result to the request waiting on it
   (``pending.py``);
2. drain client requests, plan each command (``planner.py``) and queue its
   shard ops in that shard's outbox;
3. send each shard its whole outbox as ONE batch if fewer than ``shard_depth``
   are in flight to it (else the ops coalesce until a reply frees a slot),
   and each client the replies of this turn as one frame;
4. every tick: a shard with batches in flight that the router has not
   heard from for ``shard_timeout`` is stalled (``shards.py``); idle shards
   are pinged.

Every request is answered: with results, or with a typed error.
"""
from __future__ import annotations

import logging
import signal
import time
from typing import Any

import zmq

from .. import errors, protocol
from ..config import Config
from ..protocol import GET, PING, WRITES, ErrorReply
from ..ring import Ring
from ..zmqflags import NOBLOCK, NOBLOCK_MORE
from . import stats
from .links import links_for
from .pending import CacheFill, Gather, Heartbeat, Request
from .planner import Invalid, Planner
from .readcache import MISS, ReadCache
from .shards import STALLED, Shards, error as _err
from .sockets import Gatekeeper, frontend_socket

log = logging.getLogger("flin.router")

EXIT_BIND = 5            # exit code: an endpoint could not be bound
_TICK_S = 0.1            # timeout and heartbeat checks
_DRAIN = 2000            # messages taken from a socket per loop turn
_BATCH_BYTES = 8 << 20   # flush a shard's outbox early past this size


class Router(Shards):
    def __init__(self, cfg: Config, ring: Ring, ready_fd: int | None = None) -> None:
        super().__init__(cfg, ring, ready_fd)
        n = ring.shards
        self.dirty: set[int] = set()
        self.replies: dict[bytes, list] = {}     # client identity -> replies of this turn
        self.stopping = False
        self.counts = {"requests": 0, "errors": 0, "dropped_replies": 0}
        self.stats = stats.RouterStats()     # errors by code, in flight, latency (STATS)
        self.cache = (ReadCache(int(cfg.read_cache_mb * 2**20), n)
                      if cfg.read_cache_mb > 0 else None)

        self.planner = Planner(ring, stats.RouterView(self))

        self.ctx = zmq.Context(1)
        self.gate = Gatekeeper(self.ctx)   # ZAP thread: in this process, after fork
        self.links = links_for(cfg)(cfg, self.ctx, self.gate, n)   # to the workers
        self.front = frontend_socket(self.ctx, self.gate, cfg)

    # -- delivery -----------------------------------------------------------------
    def deliver(self, target: Any, slot: int, value: Any) -> None:
        target.results[slot] = value
        if type(value) is ErrorReply and type(target) is Request:
            self.stats.errors[value.code] = self.stats.errors.get(value.code, 0) + 1
        target.waiting -= 1
        if target.waiting:
            return
        cls = type(target)
        if cls is Request:
            self.reply(target)
        elif cls is Gather:
            self.deliver(target.parent, target.slot, target.finish(target.results))
        elif cls is CacheFill:
            target.complete(self)

    def reply(self, req: Request) -> None:
        """Queue a finished request's reply; ``send_replies`` sends each
        client's replies of this loop turn as one frame."""
        st = self.stats
        st.inflight -= 1
        h = st.latency.get(req.kind)
        (h or st.histogram(req.kind)).add(time.monotonic() - req.t0)
        queued = self.replies.get(req.ident)
        if queued is None:
            self.replies[req.ident] = [(req.rid, req.results)]
        else:
            queued.append((req.rid, req.results))

    def send_replies(self) -> None:
        replies, self.replies = self.replies, {}
        front = self.front
        for ident, batch in replies.items():
            try:
                front.send(ident, NOBLOCK_MORE)
                front.send(protocol.encode_replies(batch), NOBLOCK)
            except zmq.ZMQError:  # the client left (EHOSTUNREACH) or stopped reading
                self.counts["dropped_replies"] += len(batch)

    # -- requests -------------------------------------------------------------------
    def on_request(self, frames: list) -> None:
        self.counts["requests"] += 1
        ident = frames[0]
        if len(frames) != 2:
            self.counts["errors"] += 1
            self._reject(ident, 0, "a request is exactly one frame")
            return
        try:
            requests = protocol.decode_requests(frames[1])
        except ValueError as exc:
            self.counts["errors"] += 1
            self._reject(ident, protocol.request_id_of(frames[1]), str(exc))
            return
        for rid, cmds in requests:
            self.on_commands(ident, rid, cmds)

    def on_commands(self, ident: bytes, rid: int, cmds: list) -> None:
        """Plan and route one request's commands."""
        req = Request(ident, rid, len(cmds), stats.request_kind(cmds))
        self.stats.inflight += 1
        if self.stopping:
            self.fail_all([(req, i) for i in range(len(cmds))],
                          _err(errors.ShuttingDown, "the cluster is shutting down"))
            return
        if not cmds:
            self.reply(req)
            return
        cache = self.cache
        for i, cmd in enumerate(cmds):
            if (cache is not None and type(cmd) is list and len(cmd) == 2 and cmd[0] == GET
                    and type(cmd[1]) is bytes and len(cmd[1]) <= protocol.MAX_KEY):
                key = cmd[1]
                shard = self.ring.shard(key)
                value = cache.get(shard, key)
                if value is MISS:
                    self.route(shard, [GET, key, 1],
                               CacheFill(req, i, shard, key, cache.writes[shard]), 0)
                else:
                    self.deliver(req, i, value)
                continue
            try:
                subops, finish = self.planner.plan(cmd)
            except Invalid as exc:
                self.counts["errors"] += 1
                self.deliver(req, i, _err(exc.cls, str(exc)))
                continue
            if finish is None:
                shard, op = subops[0]
                self.route(shard, op, req, i)
                continue
            if not subops:
                self.deliver(req, i, finish([]))
                continue
            g = Gather(len(subops), req, i, finish)
            for j, (shard, op) in enumerate(subops):
                self.route(shard, op, g, j)

    def _reject(self, ident: bytes, rid: int, why: str) -> None:
        """Answer a frame that is not a request: one BadRequest in place of its results."""
        code = errors.BadRequest.code
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        self.replies.setdefault(ident, []).append((rid, _err(errors.BadRequest, why)))

    def route(self, shard: int, op: list, target: Any, slot: int) -> None:
        state = self.state[shard]
        if state == STALLED:
            self.deliver(target, slot, _err(
                errors.ShardUnavailable, "shard %d is %s" % (shard, state)))
            return
        ops = self.out_ops[shard]
        if len(ops) >= self.cfg.shard_queue:
            self.deliver(target, slot, _err(
                errors.Overloaded, "shard %d has %d ops queued" % (shard, len(ops))))
            return
        if self.cache is not None and op[0] in WRITES:
            self.cache.written(shard, op)
        ops.append(op)
        self.out_sinks[shard].append((target, slot))
        code = op[0]
        if code == protocol.SET or code == protocol.MSET:
            self.out_bytes[shard] += len(op[2]) if code == protocol.SET else sum(map(len, op[1]))
            if self.out_bytes[shard] > _BATCH_BYTES:
                self.flush(shard)
                return
        self.dirty.add(shard)

    # -- the loop -------------------------------------------------------------------
    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        self.links.register(poller)
        next_tick = 0.0
        deadline = None
        now = time.monotonic()
        for shard in range(self.ring.shards):  # find the workers already running
            self.heard[shard] = now
            self.send_batch(shard, [[PING]], [(Heartbeat(), 0)])
        while True:
            if self.stopping:
                if deadline is None:
                    deadline = time.monotonic() + self.cfg.shard_timeout + 1
                if not self.busy() or time.monotonic() > deadline:
                    self._drain_front()  # what already came is answered ShuttingDown
                    self.send_replies()
                    break
            events = dict(poller.poll(int(_TICK_S * 1000)))
            for shard, frame in self.links.handle(events):
                if frame is None:
                    self.on_shard_lost(shard)
                else:
                    self.on_shard_message(shard, frame)
            if self.front in events:
                self._drain_front()
            if self.dirty:
                dirty, self.dirty = self.dirty, set()
                for shard in dirty:
                    self.flush(shard)
            if self.replies:
                self.send_replies()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + _TICK_S
                self.tick(now)
        for shard in range(self.ring.shards):
            self._fail_inflight(shard, "router stopped")
            self._fail_queued(shard)
        self.send_replies()

    def _drain_front(self) -> None:
        """Handle up to ``_DRAIN`` client frames already waiting."""
        for _ in range(_DRAIN):
            try:
                frames = self.front.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            self.on_request(frames)

    def close(self) -> None:
        self.front.close(linger=1000)
        self.links.close()
        self.gate.stop()
        self.ctx.term()


def run(cfg: Config, ring: Ring, ready_fd: int | None = None) -> int:
    """The router process's main (the supervisor has named the process and
    set its signals up); returns its exit code."""
    try:
        router = Router(cfg, ring, ready_fd)
    except zmq.ZMQError as exc:
        log.error("router: cannot bind %s: %s", cfg.bind, exc)
        return EXIT_BIND

    def on_term(signum: int, frame: Any) -> None:
        router.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.debug("router: serving %s, %d shards", cfg.bind, ring.shards)
    try:
        router.serve()
    finally:
        router.close()
    log.debug("router: stopped")
    return 0
