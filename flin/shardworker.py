"""A shard worker: one OS process owning one LevelDB folder.

It connects a DEALER (identity ``shard-N``) to the router's backend only
after its LevelDB is open, so a connected worker is a ready worker. Then it
says hello ``[0, [shard_id, pid]]`` and loops: receive one batch, apply all
of its ops in one write batch (``Store.apply``), answer once. Between
messages it sweeps expired keys. SIGTERM: finish the message in hand, close
the LevelDB, exit 0.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import plyvel
import zmq

from . import protocol, procutil
from .config import Config
from .store import Store

log = logging.getLogger("flin.shard")

EXIT_STORAGE = 3          # the LevelDB could not be opened (corrupt, locked)
_SWEEP_EVERY_MS = 500     # between idle sweeps of expired keys


def open_store(cfg: Config, shard: int) -> Store:
    return Store(
        cfg.shard_dir(shard), sync=cfg.sync, read_cache_mb=cfg.read_cache_mb,
        write_buffer_mb=cfg.write_buffer_mb, block_cache_mb=cfg.block_cache_mb,
        max_open_files=cfg.max_open_files,
    )


def run(cfg: Config, shard: int) -> int:
    """The worker's main loop; returns the process exit code."""
    procutil.become_child("flin-shard-%d" % shard)
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C goes to the supervisor
    try:
        store = open_store(cfg, shard)
    except plyvel.Error as exc:
        log.error("shard %d: cannot open %s: %s. If the files are damaged, run "
                  "`flin repair --data %s --shard %d`.", shard, cfg.shard_dir(shard),
                  exc, cfg.data, shard)
        return EXIT_STORAGE

    ctx = zmq.Context(1)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"shard-%d" % shard)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(cfg.backend)
    sock.send(protocol.encode(protocol.HELLO_ID, [shard, os.getpid()]))
    log.info("shard %d: serving %s", shard, cfg.shard_dir(shard))
    try:
        while not stopping:
            if not sock.poll(_SWEEP_EVERY_MS):
                store.recover()
                store.sweep()
                continue
            if store.write_failed_at and store.recover():
                log.warning("shard %d: reopened its LevelDB after a failed write", shard)
            frame = sock.recv()
            try:
                batch_id, ops = protocol.decode(frame)
                results = store.apply(ops)
            except Exception as exc:  # a bad batch must not kill the shard
                log.exception("shard %d: batch failed", shard)
                batch_id = protocol.request_id_of(frame)
                results = protocol.ErrorReply(10, "shard %d: %s" % (shard, exc))
            sock.send(protocol.encode(batch_id, results))
    finally:
        sock.close()
        ctx.term()
        store.close()
        log.info("shard %d: closed", shard)
    return 0


def main() -> None:  # pragma: no cover - entry for running one worker by hand
    cfg = Config(data=sys.argv[1])
    sys.exit(run(cfg, int(sys.argv[2])))
