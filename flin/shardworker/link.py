"""A shard worker's end of its link to the router, of the kind the router uses:
a Unix stream socket in the owner-only ``DATA/run`` folder (frames as in
``linkframe.LinkReader``), or a ZeroMQ DEALER, a CURVE client of the router,
with ``--backend-keys`` (the router's end is ``flin.router.links``).

``WorkerLink`` is the link to one router; ``Links`` holds one per router of
the host (``--routers``): ``connect()``, ``send(router, payload)``,
``recv(timeout)`` -> ``(router, payload)`` for what arrived (maybe nothing);
a router that goes away is reconnected in the background.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import time
from typing import Any, Callable

import zmq

from .. import protocol
from ..config import Config
from ..curve import backend_client_keys, secure_client
from ..linkframe import LinkReader, link_header
from ..zmqflags import NOBLOCK

log = logging.getLogger("flin.shard")

_CHUNK = 1 << 20                 # bytes read from a socket at a time
_SAY_AFTER_S = 5.0               # a link not reached for this long is logged (then every 30 s)
_JOIN_BELOW = 1 << 16            # a smaller reply goes out with its header in one write
_RETRY_S = 0.05                  # between attempts to reach a router that is not there


class WorkerLink:
    """A worker's end of its link to one router, of the kind the router uses."""

    def __init__(self, cfg: Config, shard: int, router: int = 0,
                 endpoint: str | None = None, ident: bytes | None = None,
                 replica: bool = False) -> None:
        self.cfg, self.shard, self.router = cfg, shard, router
        self.endpoint = endpoint or cfg.backend_of(router)   # the ZeroMQ link's
        self.retired = False             # a router of the cluster's that went away for good
        # replicas: the link as the shard's primary (named by its term; linked
        # only while primary), or as one of its copies, for replica reads
        self.ident = ident or b"shard-%d" % shard
        self.replica = replica
        self.paused = False
        self.hello = protocol.encode(protocol.HELLO_ID, [shard, os.getpid()])
        self.zmq = cfg.zmq_links
        self.sock: Any = None
        self.ctx: zmq.Context | None = None
        self.reader = LinkReader()
        self.failed: int | None = None   # errno of the last attempt that failed

    def try_connect(self) -> bool:
        """One attempt to connect and say hello; False if the router is not
        there (``failed`` says why)."""
        if self.zmq:                     # ZeroMQ connects (and reconnects) by itself
            self.ctx = zmq.Context(1)
            self.sock = worker_socket(self.ctx, self.cfg, self.ident, self.endpoint)
            self.sock.send(self.hello)
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.cfg.link_path_of(self.router))
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                raise
            self.failed = exc.errno
            return False
        if self.cfg.routers > 1:         # a router that stops reading must not stop the shard
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                            _timeval(self.cfg.shard_timeout / 2))
        self.sock, self.reader = sock, LinkReader()
        try:
            self.send(self.hello)
        except OSError:                  # the router went away meanwhile
            self.close()
            self.failed = errno.ECONNRESET
            return False
        return True

    def send(self, payload: bytes) -> None:
        """Raises ``OSError`` if the router is gone (or, with several routers,
        did not take the bytes within ``shard_timeout / 2``)."""
        if self.zmq:
            self.sock.send(payload)
            return
        header = link_header(len(payload))
        if len(payload) < _JOIN_BELOW:
            self.sock.sendall(header + payload)
        else:                            # no copy of a big reply to prepend 4 bytes
            self.sock.sendall(header)
            self.sock.sendall(payload)

    def read(self, most: int) -> list[bytes] | None:
        """The messages that have arrived (call when the socket is readable):
        up to ``most`` on ZeroMQ; on the Unix socket every frame read, reading
        a message that has begun to arrive whole. None: the router closed the link."""
        if self.zmq:
            frames: list[bytes] = []
            while len(frames) < most:
                try:
                    frames.append(self.sock.recv(NOBLOCK))
                except zmq.Again:
                    break
            return frames
        while True:
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

    def close(self, linger: int = 2000) -> None:
        if self.sock is not None:
            if self.zmq:
                self.sock.close(linger=linger)
            else:
                self.sock.close()
            self.sock = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))


class Links:
    """A worker's links to every router of the host (``cfg.routers``), or in
    cluster mode of every node (``update``): it serves whichever are
    connected and reconnects the others in the background (every
    ``_RETRY_S``), so one router's death or restart does not stop the shard
    for the rest. A router's number is its place in ``all``, never reused."""

    def __init__(self, cfg: Config, shard: int,
                 on_connect: Callable[[int], None] | None = None,
                 endpoints: list[str] | None = None, replica_slot: int | None = None) -> None:
        self.cfg, self.shard, self.on_connect = cfg, shard, on_connect
        self.replica_slot = replica_slot       # a replicated shard's copy: its read slot
        self.primary_ident: bytes | None = None   # and while primary, its name as that
        self.all = [WorkerLink(cfg, shard, i) for i in range(cfg.routers)] \
            if endpoints is None else []
        for e in endpoints or []:
            self._add(e)
        self.extra: list = []                  # other sockets polled with the links ...
        self.on_extra: Callable[[], None] | None = None   # ... and what reads them
        self.solo = cfg.routers == 1 and not cfg.zmq_links
        self.up: list[WorkerLink] = []
        self.zpoll = zmq.Poller() if cfg.zmq_links else None
        self.poll = select.poll()
        self.by_fd: dict[int, WorkerLink] = {}
        self.retry_at = 0.0
        self.say_at = time.monotonic() + _SAY_AFTER_S

    def connect(self, stopping: Any) -> bool:
        """Connect to every router there is, waiting (while not ``stopping()``)
        until at least one is; False if ``stopping()`` became true first."""
        while not stopping():
            self._reconnect(time.monotonic())
            if self.up:
                return True
            time.sleep(_RETRY_S)
        return False

    def update(self, endpoints: list[str]) -> None:
        """Cluster mode: link to exactly these routers (new nodes' ones are
        connected, those of nodes that left are closed)."""
        want = set(endpoints)
        for link in self.all:
            if not link.retired and link.endpoint not in want:
                link.retired = True
                self.drop(link)
        have = {link.endpoint for link in self.all if not link.retired}
        for e in endpoints:
            if e not in have:
                self._add(e)
        self.retry_at = 0.0

    def _add(self, endpoint: str) -> None:
        if self.replica_slot is None:
            self.all.append(WorkerLink(self.cfg, self.shard, len(self.all), endpoint))
            return
        primary = WorkerLink(self.cfg, self.shard, len(self.all), endpoint,
                             self.primary_ident or b"shard-%d-0" % self.shard)
        primary.paused = self.primary_ident is None
        self.all.append(primary)
        self.all.append(WorkerLink(self.cfg, self.shard, len(self.all), endpoint,
                                   b"shard-%d" % self.replica_slot, replica=True))

    def set_role(self, role: str, term: int) -> None:
        """A replicated copy became primary (link as it, named by the term) or
        stopped being it (those links close at once: what they held is lost)."""
        self.primary_ident = b"shard-%d-%d" % (self.shard, term) if role == "primary" else None
        for link in self.all:
            if link.replica or link.retired:
                continue
            if link.sock is not None and link.ident != self.primary_ident:
                self.drop(link, linger=0)
            link.paused = self.primary_ident is None
            link.ident = self.primary_ident or link.ident
        self.retry_at = 0.0

    def set_extra(self, socks: list, on_extra: Callable[[], None]) -> None:
        """Poll ``socks`` with the links; ``on_extra()`` when one is readable."""
        if self.zpoll is None or socks == self.extra:
            return
        for sock in self.extra:
            if sock not in socks:
                self.zpoll.unregister(sock)
        for sock in socks:
            if sock not in self.extra:
                self.zpoll.register(sock, zmq.POLLIN)
        self.extra, self.on_extra = list(socks), on_extra

    def _reconnect(self, now: float) -> None:
        self.retry_at = now + _RETRY_S
        for link in self.all:
            if link.sock is None and not link.retired and not link.paused \
                    and link.try_connect():
                self.up.append(link)
                if self.on_connect is not None:
                    self.on_connect(link.router)
                if self.zpoll is not None:
                    self.zpoll.register(link.sock, zmq.POLLIN)
                else:
                    fd = link.sock.fileno()   # type: ignore[attr-defined]
                    self.by_fd[fd] = link
                    self.poll.register(fd, select.POLLIN)
        missing = [link for link in self.all if link.sock is None and not link.retired
                   and not link.paused]
        if missing and now >= self.say_at:
            log.warning("shard %d: cannot reach router%s %s (%s); still trying", self.shard,
                        "s" if len(missing) > 1 else "",
                        ", ".join(lk.endpoint if lk.zmq else self.cfg.link_path_of(lk.router)
                                  for lk in missing),
                        os.strerror(missing[0].failed or errno.ENOENT))
            self.say_at = now + 30

    def drop(self, link: WorkerLink, linger: int = 2000) -> None:
        """Close a link whose router went away; it is reconnected later."""
        if link in self.up:
            self.up.remove(link)
            if self.zpoll is not None:
                self.zpoll.unregister(link.sock)
            else:
                fd = link.sock.fileno()
                self.by_fd.pop(fd, None)
                self.poll.unregister(fd)
            log.debug("shard %d: link to router %d closed", self.shard, link.router)
        link.close(linger)
        self.say_at = time.monotonic() + _SAY_AFTER_S

    def send(self, router: int, payload: bytes) -> None:
        """Send to ``router`` if it is linked; a router that is gone loses it
        (its batches in flight fail there)."""
        link = self.all[router]
        if link.sock is None:
            return
        try:
            link.send(payload)
        except OSError:
            self.drop(link)

    def linked(self, router: int) -> bool:
        return self.all[router].sock is not None

    def recv(self, timeout: float, most: int) -> list[tuple[int, bytes]]:
        """``(router, message)`` for what arrived, waiting up to ``timeout`` s
        for the first; [] if none came. Each router's messages keep their order."""
        if self.solo and self.up:        # one router: its one socket (the hot path)
            link = self.up[0]
            if not self.poll.poll(int(timeout * 1000)):
                return []
            frames = link.read(most)
            if frames is None:
                self.drop(link)
                return []
            return [(0, f) for f in frames]
        got: list[tuple[int, bytes]] = []
        now = time.monotonic()
        if len(self.up) < len(self.all) and not all(
                link.retired or link.paused for link in self.all if link.sock is None):
            if now >= self.retry_at:
                self._reconnect(now)
            timeout = min(timeout, max(0.0, self.retry_at - now))
        if self.zpoll is not None:
            ready = []
            for s, _ in self.zpoll.poll(int(timeout * 1000)):
                if s in self.extra:
                    if self.on_extra is not None:
                        self.on_extra()
                elif (found := self.all_by_sock(s)) is not None:
                    ready.append(found)
        else:
            ready = [self.by_fd[fd] for fd, _ in self.poll.poll(int(timeout * 1000))
                     if fd in self.by_fd]
        for link in ready:
            frames = link.read(most)
            if frames is None:
                self.drop(link)
                continue
            got += [(link.router, f) for f in frames]
        return got

    def all_by_sock(self, sock: Any) -> WorkerLink | None:
        return next((link for link in self.up if link.sock is sock), None)

    def close(self) -> None:
        for link in list(self.up):
            self.drop(link)
        for link in self.all:
            link.close()


def worker_socket(ctx: zmq.Context, cfg: Config, ident: bytes, endpoint: str) -> zmq.Socket:
    """A worker's DEALER on the ZeroMQ link, connected to a router's ``endpoint``.
    ZeroMQ heartbeats: a router host that vanishes without closing the TCP
    connection (power, network) is noticed in seconds, not at TCP's timeout."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    secure_worker(sock, cfg)
    sock.connect(endpoint)
    return sock


def secure_worker(sock: zmq.Socket, cfg: Config) -> None:
    """A worker's end of the link: a CURVE client of the router when ``backend_keys`` is set."""
    if cfg.backend_keys:
        secure_client(sock, backend_client_keys(cfg.backend_keys))
