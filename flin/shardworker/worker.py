"""A shard worker: one OS process owning one LevelDB folder.

It connects to every router of the host (``link.Links``: a Unix socket, or
a ZeroMQ DEALER with CURVE, per router) only after its LevelDB is open, so
a connected worker is a ready worker; a router that goes away is
reconnected in the background while the others are served. It says hello
``[0, [shard_id, pid]]`` on each link and loops: receive one batch, apply
all of its ops in one write batch (``Store.apply``), answer once. Batches
that queued up meanwhile, from any router, join the same write batch and
are answered one by one, each to its router. With several routers, the
keys a segment wrote go to the other routers before any answer
(``written``), for their read caches.
Big values go in segments: once the ops applied have read or written
``_SEGMENT_BYTES`` (or ``_SEGMENT_OPS`` ops ran), those are committed and
answered, a batch cut there in parts (``protocol.encode_part``), and the
rest follows. So a reply frame stays near one value's size, the worker
holds no more than that, and the router hears progress while big values
move (it tells a busy shard from a stalled one by what it hears).
Every half second, busy or idle, it sweeps a bounded number of expired keys.
SIGTERM: finish the messages in hand, close the LevelDB, exit 0.
"""
from __future__ import annotations

import logging
import os
import resource
import signal
import time
from typing import Any, Iterator

import plyvel

from .. import nodeview, protocol
from ..config import Config
from ..errors import BadRequest, InternalError
from ..ring import Ring
from . import admin, fencing, handoff, moving
from .handlers import HANDLERS
from .link import Links
from .replication import Replica
from .store import Store
from .tracking import Tracker

log = logging.getLogger("flin.shard")

EXIT_STORAGE = 3          # the LevelDB could not be opened (corrupt, locked, missing) or vanished
EXIT_MOVED = 6            # the shard was handed off to another node: not to be restarted here
_HAND_OFF_LINGER_S = 0.2  # after a hand-off: answering Moved this long before exiting
_SWEEP_EVERY_MS = 500     # between idle sweeps of expired keys
_MAX_MERGE = 16           # queued batches applied as one write batch
_SEGMENT_BYTES = 8 << 20  # values read or written before those ops are committed and answered
_SEGMENT_OPS = 10_000     # ops applied before they are committed and answered
_CLEANUP_EVERY_S = 0.02   # between cleanup steps after a reshard (each looks at 2,000 keys)
_REPLICA_VIEW_S = 0.05    # a replicated copy reads the node view this often (who is primary)


def _open_files_allowed(wanted: int) -> int:
    """LevelDB's table cache size, kept under this process's file limit
    (sockets and logs need some too). Too small a cache reopens a table
    file on nearly every read once a shard holds more tables than that."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - 64))


def open_store(cfg: Config, shard: int) -> Store:
    """The shard's LevelDB with the options of ``cfg`` and every op handler."""
    return Store(
        cfg.shard_dir(shard), HANDLERS, shard=shard, sync=cfg.sync,
        write_buffer_mb=cfg.write_buffer_mb, block_cache_mb=cfg.block_cache_mb,
        compression=cfg.compression,
        max_open_files=_open_files_allowed(cfg.max_open_files),
    )


def serve(store: Store, frames: list[tuple[int, bytes]], shard: int,
          tracker: Tracker | None = None) -> Iterator[tuple[int, bytes]]:
    """Apply the ops of several batches (``(router, frame)``) as one write
    batch, or as several segments when their values are big; yield the
    replies as they are ready, each batch's (or its parts) to its router.
    With several routers (``tracker``), each segment's notices to the
    routers whose cached keys it changed go first (``tracking.py``)."""
    batches: list[tuple[int, int, int | None, str | None]] = []
    spans: list[tuple[int, int, int]] = []   # (router, first op, end) of each batch
    ops: list = []
    for origin, frame in frames:
        try:
            batch_id, batch_ops = protocol.decode(frame)
            if type(batch_ops) is not list:
                raise ValueError("ops must be an array")
        except Exception as exc:  # a bad batch must not kill the shard
            batches.append((origin, protocol.request_id_of(frame), None, str(exc)))
            continue
        batches.append((origin, batch_id, len(batch_ops), None))
        if tracker is not None:
            spans.append((origin, len(ops), len(ops) + len(batch_ops)))
        ops.extend(batch_ops)
    results: list = []                 # of the segment being answered
    taken = 0                          # of those, handed out
    pos = 0                            # ops applied
    failure = None
    for origin, batch_id, n, bad in batches:
        if n is None:
            yield origin, protocol.encode(batch_id, protocol.ErrorReply(
                BadRequest.code, "shard %d: undecodable batch: %s" % (shard, bad)))
            continue
        done = 0
        while failure is None:
            if taken == len(results) and done < n:
                first = pos
                try:
                    results, pos = store.apply_some(ops, pos, _SEGMENT_OPS, _SEGMENT_BYTES)
                except Exception as exc:
                    log.exception("shard %d: batch failed", shard)
                    failure = protocol.ErrorReply(InternalError.code, "shard %d: %s" % (shard, exc))
                    break
                if spans:
                    yield from tracker.segment(ops, results, spans, first, pos)  # type: ignore[union-attr]
                taken = 0
            part = results[taken:taken + n - done]
            taken += len(part)
            done += len(part)
            if done == n:
                yield origin, protocol.encode(batch_id, part)
                break
            yield origin, protocol.encode_part(batch_id, part)
        if failure is not None:        # the rest of this batch, and the batches after it
            yield origin, protocol.encode(batch_id, failure)


def replica_slot(view: dict, shard: int) -> int | None:
    """A replicated shard's copy here: the router slot it takes replica reads
    on (``shards + shards * its place among the copies``); None without replicas."""
    reps = view.get("replicas") or []
    copies = reps[shard] if shard < len(reps) else []
    if len(copies) < 2 or view.get("me") not in copies:
        return None
    n = int(view.get("shards") or len(reps))
    return shard + n * (1 + copies.index(view.get("me")))


def run(cfg: Config, shard: int, ring: Ring | None = None, epoch: int = 1) -> int:
    """The worker process's main loop (the supervisor has named the process
    and set its signals up); returns the process exit code. ``ring`` and
    ``epoch``: the topology the shard acts on (``moving.py``; the ring of
    ``cfg.shards`` at epoch 1 if not given)."""
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C goes to the supervisor
    if handoff.handed_off(cfg.shard_dir(shard)):
        log.info("shard %d: %s was handed off to another node; not serving it",
                 shard, cfg.shard_dir(shard))
        return EXIT_MOVED
    if os.path.exists(os.path.join(cfg.shard_dir(shard), handoff.IMPORTING)):
        log.error("shard %d: %s is a copy a move had not finished (%s): not serving it",
                  shard, cfg.shard_dir(shard), handoff.IMPORTING)
        return EXIT_STORAGE
    try:
        store = open_store(cfg, shard)
    except plyvel.Error as exc:
        if not os.path.exists(os.path.join(cfg.shard_dir(shard), "CURRENT")):
            log.error("shard %d: no LevelDB in %s (its folder or CURRENT file is missing); "
                      "Flin creates shards only in a new data folder", shard, cfg.shard_dir(shard))
            return EXIT_STORAGE
        log.error("shard %d: cannot open %s: %s. If the files are damaged, run "
                  "`flin repair --data %s --shard %d`.", shard, cfg.shard_dir(shard),
                  exc, cfg.data, shard)
        return EXIT_STORAGE
    moving.on_start(store, ring or Ring(cfg.shards), epoch)
    view = None
    slot: int | None = None
    if cfg.etcd:          # cluster mode: the routers of every node, and the lease fence
        view = nodeview.View(cfg.run_dir)
        view.poll()
        fencing.lease_fence(store, view.data, cfg.node or "")
        slot = replica_slot(view.data, shard)
    tracker = Tracker(cfg.routers) if cfg.routers > 1 and view is None else None
    links = Links(cfg, shard, tracker.reset if tracker is not None else None,
                  None if view is None else list(view.get("backends", [])), slot)
    if slot is not None and view is not None:     # a copy of a replicated shard
        try:
            store.replica = Replica(cfg, store, cfg.node or "")
        except Exception:
            log.exception("shard %d: cannot start its replication", shard)
            links.close()
            store.close()
            return EXIT_STORAGE
        store.replica.on_role = links.set_role
        store.replica.follow_view(view.data)
    replica = store.replica
    if not links.connect(lambda: stopping):
        if replica is not None:
            replica.close()
        admin.close(store)
        store.close()
        return 0
    log.debug("shard %d: serving %s", shard, cfg.shard_dir(shard))
    next_sweep = next_cleanup = next_view = 0.0
    try:
        while not stopping:
            now = time.monotonic()
            if replica is not None:    # who is primary: looked at often (a failover waits on it)
                for router, reply in replica.release():
                    links.send(router, reply)
                replica.tick()
                if now >= next_view and view is not None:
                    next_view = now + _REPLICA_VIEW_S
                    if view.poll():
                        links.update(list(view.get("backends", [])))
                        fencing.lease_fence(store, view.data, cfg.node or "")
                        if replica_slot(view.data, shard) != slot:
                            log.info("shard %d: its copies changed places; restarting", shard)
                            break
                        replica.follow_view(view.data)
            if now >= next_sweep:  # background work, bounded, busy or idle
                next_sweep = now + _SWEEP_EVERY_MS / 1000
                if not store.still_there():
                    break
                store.recover()
                store.sweep()
                admin.expire_snapshots(store)
                moving.expire_move(store)
                if view is not None and replica is None:
                    if view.poll():
                        links.update(list(view.get("backends", [])))
                        fencing.lease_fence(store, view.data, cfg.node or "")
                    handoff.settle(store, view.data)   # a fenced move's end
            wait = _SWEEP_EVERY_MS / 1000 if replica is None else _REPLICA_VIEW_S
            if store.handed_off_at is not None:    # answering Moved a little, then out
                if now - store.handed_off_at > _HAND_OFF_LINGER_S:
                    break
                wait = _HAND_OFF_LINGER_S / 4
            if store.cleanup_at is not None:   # after a reshard: keys it no longer owns
                wait = _CLEANUP_EVERY_S
                if now >= next_cleanup:
                    next_cleanup = now + _CLEANUP_EVERY_S
                    moving.cleanup_step(store)
            # one message, and whatever else is queued (from any router) joins its
            # write batch; a router that went away is reconnected meanwhile
            if replica is not None:    # (its socket to the primary may have changed)
                links.set_extra(replica.sockets(), replica.on_message)
            frames = links.recv(wait, _MAX_MERGE)
            if not frames:
                continue
            if store.write_failed_at and store.recover():
                log.warning("shard %d: reopened its LevelDB after a failed write", shard)
            if replica is not None:    # replica reads apart: they may not write
                reads = [f for f in frames if links.all[f[0]].replica]
                if reads:
                    frames = [f for f in frames if not links.all[f[0]].replica]
                    store.via_replica = True
                    try:
                        for router, reply in serve(store, reads, shard):
                            if replica.holds():   # (the primary's: nothing a failover drops)
                                replica.hold(router, reply)
                            else:
                                links.send(router, reply)
                    finally:
                        store.via_replica = False
            for router, reply in serve(store, frames, shard, tracker):
                if replica is not None and replica.holds():   # until on enough copies
                    replica.hold(router, reply)
                else:
                    links.send(router, reply)  # to a router that died: lost with it
            if store.vanished:
                break
    finally:
        links.close()
        if replica is not None:
            replica.close()
        admin.close(store)
        store.close()
        log.debug("shard %d: closed", shard)
    if store.handed_off_at is not None:
        return EXIT_MOVED
    if store.vanished:   # the supervisor marks the shard broken, naming the folder
        log.error("shard %d: its folder %s was deleted or replaced while it ran: "
                  "refusing writes and stopping", shard, cfg.shard_dir(shard))
        return EXIT_STORAGE
    return 0
