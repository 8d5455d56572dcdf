"""The router: one process between clients and shard workers.

A ZeroMQ ROUTER socket for clients (``sockets.frontend_socket``) and a
link to each worker (``links.py``). One loop, no threads:

1. drain worker replies and scatter each result to the request waiting on it
   (``pending.py``);
2. drain client requests, plan each command (``planner.py``) and queue its
   shard ops in that shard's outbox;
3. send each shard its whole outbox as ONE batch if fewer than ``shard_depth``
   are in flight to it (else the ops coalesce until a reply frees a slot),
   and each client the replies of this turn as one frame (``replies.py``);
4. every tick: a shard with batches in flight that the router has not
   heard from for ``shard_timeout`` is stalled (``shards.py``); idle shards
   are pinged.

Every request is answered: with results, or with a typed error. Memory is
bounded in bytes: values queued for shards (``_SHARD_BYTES`` per shard,
``_QUEUED_BYTES`` in all, with what is in flight; past them ``Overloaded``),
results held by requests that wait for more (``MAX_REPLY`` per request or
MGET, past it ``TooLarge``; ``HELD_BYTES`` in all, past it ``Overloaded``),
big shard frames being read (``links.READ_BYTES``) and replies a client has
not read (``replies.py``).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import zmq

from .. import errors, protocol
from ..config import Config
from ..protocol import (
    CAS, GET, MAX_REPLY, MGET, MSET, PING, REPLICA, RESHARD, SCAN, SET, WRITES, ErrorReply,
)
from ..ring import Ring
from . import stats
from .clients import ClientLimit
from .links import links_for
from .pending import HELD_BYTES, CacheFill, Gather, Heartbeat, Request, RespBatch, flat_bytes
from .planner import Invalid, Planner
from .readcache import MISS, ReadCache
from .replies import RETRY_MS, ReplyQueue
from .front import Front
from .respfront import RespFront
from .resharding import MOVED_RETRY_S, Relay, Resharding
from .nodes import Nodes
from .shards import STALLED, UP, Shards, error as _err
from .sockets import Gatekeeper, frontend_socket

log = logging.getLogger("flin.router")

EXIT_BIND = 5            # exit code: an endpoint could not be bound
_TICK_S = 0.1            # timeout and heartbeat checks
_BATCH_BYTES = 8 << 20   # flush a shard's outbox early past this size
_SHARD_BYTES = 64 << 20  # values queued for one shard (one op always fits an empty outbox)
_QUEUED_BYTES = 512 << 20  # values queued or in flight to all shards


class Router(Front, RespFront, Resharding, Nodes, Shards):
    def __init__(self, cfg: Config, ring: Ring, ready_fd: int | None = None,
                 epoch: int = 1) -> None:
        super().__init__(cfg, ring, ready_fd)
        self.init_resharding(epoch)     # (the planner's epoch is set below, once it exists)
        n = ring.shards
        self.held = 0                            # result bytes held by waiting targets
        self.dirty: set[int] = set()
        self.replies: dict[bytes, list] = {}     # client identity -> replies of this turn
        self.stopping = False
        self.counts = {"requests": 0, "errors": 0, "dropped_replies": 0, "refused_replies": 0,
                       "waited_frames": 0}
        self.stats = stats.RouterStats()     # errors by code, in flight, latency (STATS)
        self.peers = cfg.routers > 1 or bool(cfg.etcd)   # other routers share the shards
        self.cache = ReadCache.for_router(cfg, n, self.peers)

        self.planner = Planner(ring, stats.RouterView(self))
        self.planner.epoch = epoch

        self.ctx = zmq.Context(1)
        self.gate = Gatekeeper(self.ctx)   # ZAP thread: in this process, after fork
        self.links = links_for(cfg)(cfg, self.ctx, self.gate, n)   # to the workers
        self.links.inflight = self.inflight
        self.init_nodes()                   # cluster mode: the node view (``nodes.py``)
        self.front, self.ipc_claim = frontend_socket(self.ctx, self.gate, cfg)
        self.clients = ClientLimit(self.front, cfg.endpoint, cfg.max_clients, n)
        self.out = ReplyQueue(self.front, self.counts)
        self.poller = zmq.Poller()
        self.resp: Any = None               # the RESP port (``resp/``), if on
        self.resp_commands: Any = None
        if cfg.resp:
            from .resp import open_resp
            self.resp, self.resp_commands = open_resp(cfg, self)

    # -- delivery -----------------------------------------------------------------
    def deliver(self, target: Any, slot: int, value: Any) -> None:
        target.results[slot] = value
        if type(value) is ErrorReply:
            if type(target) is Request or type(target) is RespBatch:
                self.stats.errors[value.code] = self.stats.errors.get(value.code, 0) + 1
        elif target.cap and value is not None:
            self.hold(target, slot, value)
        target.waiting -= 1
        if target.waiting:
            return
        if target.cap:
            self.held -= target.nbytes
        cls = type(target)
        if cls is Request or cls is RespBatch:
            self.reply(target)
        elif cls is Gather:
            self.deliver(target.parent, target.slot, target.finish(target.results))
        elif cls is CacheFill or cls is Relay:
            target.complete(self)

    def hold(self, target: Any, slot: int, value: Any) -> None:
        """Count a result a target keeps until its others come: past its cap
        it is TooLarge (an MGET: all of it, now), past the router's budget
        Overloaded."""
        n = target.sizer(value)
        if not n:
            return
        if target.nbytes + n > target.cap:
            err = _err(errors.TooLarge, "the results pass %d bytes (the reply limit)" % target.cap)
            if type(target) is Gather:           # the command fails: let go of its parts
                results = target.results
                for i, r in enumerate(results):
                    if type(r) is not ErrorReply and r is not None:
                        results[i] = err
                self.held -= target.nbytes
                target.nbytes, target.cap = 0, -1   # and of any part still to come
            target.results[slot] = err
        elif self.held + n > HELD_BYTES:
            target.results[slot] = _err(errors.Overloaded, "the router holds %d bytes of "
                                        "results waiting for others; retry" % self.held)
        else:
            target.nbytes += n
            self.held += n

    def reply(self, req: Request) -> None:
        """Queue a finished request's reply; ``send_replies`` sends each
        client's replies of this loop turn as one frame."""
        st = self.stats
        st.inflight -= 1
        h = st.latency.get(req.kind)
        (h or st.histogram(req.kind)).add(time.monotonic() - req.t0)
        if type(req) is RespBatch:
            self.resp_reply(req)
            return
        queued = self.replies.get(req.ident)
        if queued is None:
            self.replies[req.ident] = [(req.rid, req.results)]
        else:
            queued.append((req.rid, req.results))

    def send_replies(self) -> None:
        replies, self.replies = self.replies, {}
        self.out.send(replies)

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
        if self.out.waiting and self.out.refusing(ident):   # it does not read its replies
            why = _err(errors.Overloaded, "replies wait for this client to read them; retry")
            for rid, _ in requests:
                self._reject(ident, rid, why)
            return
        for rid, cmds in requests:
            self.on_commands(ident, rid, cmds)

    def on_commands(self, ident: bytes, rid: int, cmds: list) -> None:
        """Plan and route one request's commands."""
        req = Request(ident, rid, len(cmds), stats.request_kind(cmds))
        self.stats.inflight += 1
        self.route_commands(req, cmds)

    def route_commands(self, req: Any, cmds: list) -> None:
        """Plan and route the commands of ``req`` (a ``Request`` or ``RespBatch``)."""
        if not cmds:
            self.reply(req)
            return
        if self.stopping:
            self.fail_all([(req, i) for i in range(len(cmds))],
                          _err(errors.ShuttingDown, "the cluster is shutting down"))
            return
        if self.paused_at is not None and self.parks(req, cmds):   # a reshard's switch
            return
        cache = self.cache
        for i, cmd in enumerate(cmds):
            if (cache is not None and type(cmd) is list and len(cmd) == 2 and cmd[0] == GET
                    and type(cmd[1]) is bytes and len(cmd[1]) <= protocol.MAX_KEY):
                key = cmd[1]
                shard = self.ring.shard(key)
                value = (MISS if self.peers and (self.state[shard] != UP
                                                 or self.links.behind(shard))
                         else cache.get(shard, key))
                if value is MISS:
                    self.route(shard, [GET, key, 1],
                               CacheFill(req, i, shard, key, cache.writes[shard]), 0)
                else:
                    self.deliver(req, i, value)
                continue
            if self.resharding and self.refuses_backup(req, i, cmd):   # resharding.py
                continue
            try:
                subops, finish = self.planner.plan(cmd)
            except Invalid as exc:
                if type(cmd) is list and cmd and cmd[0] == RESHARD:  # not the planner's: ours
                    self.on_reshard(req, i, cmd)
                    continue
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
            code = cmd[0] if cmd[0] != REPLICA else cmd[1][0]
            g = (Gather(len(subops), req, i, finish, MAX_REPLY, flat_bytes) if code == MGET
                 else Gather(len(subops), req, i, finish, HELD_BYTES) if code == SCAN
                 else Gather(len(subops), req, i, finish))
            for j, (shard, op) in enumerate(subops):
                self.route(shard, op, g, j)

    def _reject(self, ident: bytes, rid: int, why: str | ErrorReply) -> None:
        """Answer a request unread: one error (BadRequest, unless given) in
        place of its results."""
        err = why if type(why) is ErrorReply else _err(errors.BadRequest, str(why))
        self.stats.errors[err.code] = self.stats.errors.get(err.code, 0) + 1
        self.replies.setdefault(ident, []).append((rid, err))

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
        code = op[0]
        size = 0
        if code == SET or code == MSET or code == CAS:
            size = (len(op[2]) if code == SET else sum(map(len, op[1])) if code == MSET
                    else len(op[3]) + len(op[2] or b""))
            queued = self.out_bytes[shard]
            if ((queued and queued + size > _SHARD_BYTES)
                    or (self.queued_bytes and self.queued_bytes + size > _QUEUED_BYTES)):
                self.deliver(target, slot, _err(errors.Overloaded, "%d bytes queued for shard "
                             "%d, %d for all; retry" % (queued, shard, self.queued_bytes)))
                return
        if self.cache is not None and code in WRITES:
            self.cache.written(shard, op)
        ops.append(op)
        self.out_sinks[shard].append((target, slot))
        if size:
            self.out_bytes[shard] += size
            self.queued_bytes += size
            if self.out_bytes[shard] > _BATCH_BYTES:
                self.flush(shard)
                return
        self.dirty.add(shard)

    # -- the loop -------------------------------------------------------------------
    def serve(self) -> None:
        poller = self.poller
        poller.register(self.front, zmq.POLLIN)
        if self.resp is not None:
            poller.register(self.resp.fd, zmq.POLLIN)
        self.clients.register(poller)
        self.links.register(poller)
        next_tick = 0.0
        deadline = None
        now = time.monotonic()
        for shard in range(self.slots):  # find the workers already running
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
            resp = self.resp
            events = dict(poller.poll(0 if resp is not None and resp.ready else
                                      RETRY_MS if self.out.moving() else
                                      int(MOVED_RETRY_S * 1000) if self.moved else
                                      int(_TICK_S * 1000)))
            self._drain_links(events)
            if self.clients.monitor in events:   # before the requests those connections sent
                self.clients.on_events()
            if self.front in events:
                self._drain_front()
            if resp is not None and (resp.ready or resp.fd in events):
                self._drain_resp()
            if self.moved:
                self.send_moved(time.monotonic())
            if self.dirty:
                dirty, self.dirty = self.dirty, set()
                for shard in dirty:
                    self.flush(shard)
            if self.pause_waiters:
                self.check_drained()
            if self.replies:
                self.send_replies()
            elif self.out.waiting:
                self.out.flush()
            self.links.release()         # the big frames of this turn are answered
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + _TICK_S
                self.tick(now)
                self.node_tick(now)
                self.reshard_tick(now)
                self.clients.tick(now)
                if self.resp is not None:
                    self.resp.tick(now)
        for shard in range(self.slots):
            self._fail_inflight(shard, "router stopped")
            self._fail_queued(shard)
        self.send_replies()

    def _drain_links(self, events: dict) -> None:
        """Handle what the workers sent (a method: no frame outlives the turn)."""
        self._handle_links(self.links.handle(events))

    def _drain_links_now(self) -> None:
        """Handle what the workers have sent by now, outside the loop's poll."""
        self._handle_links(self.links.handle_now())

    def _handle_links(self, got: Any) -> None:
        for shard, frame in got:
            if frame is None:
                self.on_shard_lost(shard)
            else:
                self.on_shard_message(shard, frame)

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close_all()
        self.clients.close()
        self.front.close(linger=1000)
        if self.ipc_claim is not None:   # after the socket: the path is ours until then
            os.close(self.ipc_claim)
        self.links.close()
        self.gate.stop()
        self.ctx.term()


def run(cfg: Config, ring: Ring, ready_fd: int | None = None, epoch: int = 1,
        slots: int | None = None) -> int:
    """The router process's main (the supervisor has named the process and
    set its signals up); returns its exit code. ``epoch``: the topology's;
    ``slots``: the shards to link to, more than the ring's while a reshard
    runs (``resharding.py``)."""
    try:
        router = Router(cfg, ring, ready_fd, epoch)
        if slots is not None and slots > ring.shards:
            router.link_both(slots)
    except zmq.ZMQError as exc:
        log.error("router %d: cannot bind %s: %s", cfg.router_id, cfg.endpoint, exc)
        return EXIT_BIND
    except OSError as exc:
        log.error("router %d: cannot listen for RESP on %s: %s", cfg.router_id, cfg.resp, exc)
        return EXIT_BIND

    def on_term(signum: int, frame: Any) -> None:
        router.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.debug("router %d: serving %s, %d shards", cfg.router_id, cfg.endpoint, ring.shards)
    try:
        router.serve()
    finally:
        router.close()
    log.debug("router: stopped")
    return 0
