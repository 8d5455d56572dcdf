"""A shard worker's end of its link to the router, of the kind the router uses:
a Unix stream socket in the owner-only ``DATA/run`` folder (frames as in
``protocol.LinkReader``), or a ZeroMQ DEALER, a CURVE client of the router,
with ``--backend-keys`` (the router's end is ``flin.router.links``).

``connect()``, ``send(payload)``, ``recv(timeout)`` -> the payloads that
arrived (maybe none), or None when the router went away.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from typing import Any

import zmq

from .. import protocol
from ..config import Config
from ..curve import backend_client_keys, secure_client
from ..protocol import LinkReader, link_header
from ..zmqflags import NOBLOCK

log = logging.getLogger("flin.shard")

_CHUNK = 1 << 20                 # bytes read from a socket at a time
_SAY_AFTER_S = 5.0               # a link not reached for this long is logged (then every 30 s)
_JOIN_BELOW = 1 << 16            # a smaller reply goes out with its header in one write


class WorkerLink:
    """A worker's end of its link to the router, of the kind the router uses."""

    def __init__(self, cfg: Config, shard: int) -> None:
        self.cfg, self.shard = cfg, shard
        self.hello = protocol.encode(protocol.HELLO_ID, [shard, os.getpid()])
        self.zmq = bool(cfg.backend_keys)
        self.sock: Any = None
        self.ctx: zmq.Context | None = None
        self.reader = LinkReader()
        self.poll: Any = None

    def connect(self, stopping: Any) -> bool:
        """Connect (retrying while the router is not there) and say hello;
        False if ``stopping()`` became true first."""
        if self.zmq:
            self.ctx = zmq.Context(1)
            self.sock = worker_socket(self.ctx, self.cfg, self.shard)
            self.sock.send(self.hello)
            return True
        path = self.cfg.link_path
        say_at = time.monotonic() + _SAY_AFTER_S
        while not stopping():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except OSError as exc:
                sock.close()
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                    raise
                if time.monotonic() >= say_at:   # the supervisor restarts a router without it
                    log.warning("shard %d: cannot reach the router at %s (%s); still trying",
                                self.shard, path, os.strerror(exc.errno))
                    say_at = time.monotonic() + 30
                time.sleep(0.05)
                continue
            self.sock, self.reader = sock, LinkReader()
            self.poll = select.poll()
            self.poll.register(sock.fileno(), select.POLLIN)
            try:
                self.send(self.hello)
            except (BrokenPipeError, ConnectionResetError):  # the router went away: retry
                self.close()
                time.sleep(0.05)
                continue
            return True
        return False

    def send(self, payload: bytes) -> None:
        if self.zmq:
            self.sock.send(payload)
            return
        header = link_header(len(payload))
        if len(payload) < _JOIN_BELOW:
            self.sock.sendall(header + payload)
        else:                            # no copy of a big reply to prepend 4 bytes
            self.sock.sendall(header)
            self.sock.sendall(payload)

    def recv(self, timeout: float, most: int) -> list[bytes] | None:
        """Up to ``most`` messages, waiting up to ``timeout`` s for the first;
        [] if none came; None if the router closed the link."""
        if self.zmq:
            if not self.sock.poll(int(timeout * 1000)):
                return []
            frames = [self.sock.recv()]
            while len(frames) < most:
                try:
                    frames.append(self.sock.recv(NOBLOCK))
                except zmq.Again:
                    break
            return frames
        frames = self.reader.frames()
        if frames:
            return frames
        if not self.poll.poll(int(timeout * 1000)):
            return []
        while True:              # readable: a message is arriving; read it whole
            try:
                got = self.reader.read(self.sock)
            except InterruptedError:
                continue
            except OSError:
                return None
            if not got:
                return None
            frames = self.reader.frames()
            if frames:
                return frames

    def close(self) -> None:
        if self.sock is not None:
            if self.zmq:
                self.sock.close(linger=2000)
            else:
                self.sock.close()
            self.sock = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None


def worker_socket(ctx: zmq.Context, cfg: Config, shard: int) -> zmq.Socket:
    """A worker's DEALER on the ZeroMQ link, connected to the router."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"shard-%d" % shard)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    secure_worker(sock, cfg)
    sock.connect(cfg.backend)
    return sock


def secure_worker(sock: zmq.Socket, cfg: Config) -> None:
    """A worker's end of the link: a CURVE client of the router when ``backend_keys`` is set."""
    if cfg.backend_keys:
        secure_client(sock, backend_client_keys(cfg.backend_keys))
