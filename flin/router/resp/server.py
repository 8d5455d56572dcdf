"""The router's RESP sockets: a TCP listener (``SO_REUSEPORT`` when several
routers share the port) and its connections, all in one epoll set whose
descriptor sits in the router's ZeroMQ poller beside its other sockets.

``poll()`` accepts, reads and writes what is ready and returns each
connection's commands of this loop turn; the router routes them as one
request (``respfront.RespFront.on_resp``) and gives the replies back in
order with ``answer()``. A connection has one such batch in flight at a
time (its client's next bytes wait in the kernel, and then come as the next
batch), so replies stay in order without a queue. Its replies may wait to
be written while the next batch is read: a client that sends a whole
pipeline before reading (redis-py) is served as Redis serves it, up to
``OUT_BUSY`` bytes of replies unread; past that its new commands are
answered ``BUSY`` unrouted (the router's answer to a client that does not
read, as for ZeroMQ clients), and past ``OUT_STOP`` it is not read at all
until it reads. So what one connection costs is bounded: one command being
parsed (``parse.MAX_COMMAND``), one read (``_READ``), one batch in flight,
``OUT_STOP`` bytes of replies.

Connections are registered edge-triggered, for input, output and the
peer's half-close, once: an edge marks the connection ``readable`` (or
writes what waits), and a readable connection with no batch out is read
this turn or, once its batch is answered, in the next (``ready``). So
serving a batch costs no ``epoll_ctl`` (two per batch, 3 % of the router
under redis-benchmark -P 16, when interest was switched off and on). A read
stops at a short ``recv`` (the kernel had no more), unless the peer has
half-closed: then it reads on to the end of the stream, which no edge would
announce again.

Before AUTH (with a password) the parser takes at most 10 arguments of
16 KiB a command, as Redis does, so an unauthenticated client cannot make
the router buffer a big command.

Refused, as Redis does: past ``max_clients`` connections (``-ERR max number
of clients reached``, then closed); input no request can be read from (the
error, then closed); with ``timeout`` set, a connection idle that long
(closed). At the open-file limit the listener rests for ``_EMFILE_REST_S``
rather than spin on ``accept``. With TLS (``ssl``), the handshake runs
non-blocking in the same loop.
"""
from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import time
from collections import deque
from typing import Any

from . import reply as R
from .commands import Session
from .parse import Parser, RespError

log = logging.getLogger("flin.router")

_READ = 256 * 1024         # bytes read from one connection per loop turn
_ACCEPTS = 256             # connections accepted per loop turn
_EMFILE_REST_S = 0.1       # the listener rests this long when out of descriptors
_IN, _OUT, _ET = select.EPOLLIN, select.EPOLLOUT, select.EPOLLET
_GONE = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
OUT_BUSY = 64 << 20        # replies unread by one connection past which its commands get BUSY
OUT_STOP = 2 * OUT_BUSY    # ... and past which it is not read until it reads
TOTAL_BUSY = 256 << 20     # replies unread by all connections past which new commands get BUSY
TOTAL_STOP = 1 << 30       # ... and past which a connection with replies unread is not read
_BUSY = b"-BUSY replies wait unread; not run, retry once they are read\r\n"


def listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A non-blocking TCP listener on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Conn:
    """One RESP connection."""

    __slots__ = ("sock", "fd", "parser", "out", "out_bytes", "busy", "session", "last",
                 "closing", "handshaking", "readable", "hup")

    def __init__(self, sock: Any, session: Session, tls: bool) -> None:
        self.sock, self.fd, self.session = sock, sock.fileno(), session
        self.parser = Parser(lambda: not session.authed)
        self.out: deque = deque()     # reply bytes not yet written, in order
        self.out_bytes = 0
        self.busy = False             # a batch is in flight
        self.last = time.monotonic()  # last input
        self.closing = False          # close once ``out`` is written
        self.handshaking = tls
        self.readable = False         # input may wait unread (an edge came, or a read stopped short)
        self.hup = False              # the peer half-closed: read to the end of the stream


class RespServer:
    """The listener and connections of one router."""

    def __init__(self, host: str, port: int, reuse_port: bool, max_clients: int,
                 timeout: float, tls: ssl.SSLContext | None, password: bool) -> None:
        self.listener = listen(host, port, reuse_port)
        self.port = self.listener.getsockname()[1]
        self.max_clients, self.timeout, self.tls, self.password = max_clients, timeout, tls, password
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), _IN)
        self.fd = self.ep.fileno()
        self.conns: dict[int, Conn] = {}
        self.ready: set[Conn] = set()      # readable, no batch out, not past OUT_STOP
        self.out_total = 0                 # reply bytes unread by all connections
        self.resting_until = 0.0
        self.next_id = 1
        self.counts = {"accepted": 0, "rejected": 0, "commands": 0, "bytes_in": 0,
                       "bytes_out": 0, "protocol_errors": 0, "timeouts": 0}

    # -- the loop turn ---------------------------------------------------------------
    def poll(self) -> list[tuple[Conn, list]]:
        """What is ready now: accept, read, write; each connection's new commands."""
        lfd = self.listener.fileno()
        ready = self.ready
        for fd, ev in self.ep.poll(0, 4096):
            if fd == lfd:
                self._accept()
                continue
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if conn.out or conn.handshaking:
                self._write(conn)
            if ev & (_IN | _GONE):
                conn.readable = True
                if ev & _GONE:
                    conn.hup = True
                if self._may_read(conn):
                    ready.add(conn)
        if not ready:
            return []
        got = []
        for conn in list(ready):
            ready.discard(conn)
            if self.conns.get(conn.fd) is conn:
                cmds = self._read(conn)
                if cmds:
                    got.append((conn, cmds))
                elif conn.readable and self._may_read(conn):
                    ready.add(conn)           # a read stopped at _READ inside one command
        return got

    def _may_read(self, conn: Conn) -> bool:
        out = conn.out_bytes
        return (not conn.busy and not conn.closing and out < OUT_STOP
                and (out == 0 or self.out_total < TOTAL_STOP)
                and self.conns.get(conn.fd) is conn)

    def busy_reply(self, conn: Conn) -> bytes | None:
        """The BUSY error for new commands while ``conn`` (or all connections)
        has too many replies unread; None if it may be served."""
        if conn.out_bytes >= OUT_BUSY or (conn.out_bytes and self.out_total >= TOTAL_BUSY):
            return _BUSY
        return None

    def _accept(self) -> None:
        for _ in range(_ACCEPTS):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("RESP: cannot accept (%s): resting %.1fs", exc.strerror,
                                _EMFILE_REST_S)
                    self.ep.unregister(self.listener.fileno())
                    self.resting_until = time.monotonic() + _EMFILE_REST_S
                    return
                continue                       # ECONNABORTED and the like: that one is gone
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counts["accepted"] += 1
            if len(self.conns) >= self.max_clients:
                self.counts["rejected"] += 1
                try:
                    sock.send(R.error("ERR max number of clients reached"))
                except OSError:
                    pass
                sock.close()
                continue
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            cid, self.next_id = self.next_id, self.next_id + 1
            conn = Conn(sock, Session(cid, "%s:%s" % addr[:2], not self.password),
                        self.tls is not None)
            self.conns[conn.fd] = conn
            self.ep.register(conn.fd, _IN | _OUT | _ET | select.EPOLLRDHUP)

    def _read(self, conn: Conn) -> list:
        """Read and parse what ``conn`` sent; its commands (or none)."""
        if conn.handshaking and not self._handshake(conn):
            conn.readable = False              # its next bytes come with an edge
            return []
        sock = conn.sock
        chunks: list = []
        size = 0
        conn.readable = False
        while True:
            if size >= _READ:
                conn.readable = True           # more may wait: read on, next turn
                break
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                break
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                if not chunks:
                    self.close(conn)
                    return []
                conn.closing = True            # answer what came, then close
                break
            chunks.append(data)
            size += len(data)
            if len(data) < 65536 and self.tls is None and not conn.hup:
                break                          # the kernel had no more: the next edge says when
            # (TLS gives a record at a time: read on until it wants more)
        if not chunks:
            return []
        self.counts["bytes_in"] += size
        conn.last = time.monotonic()
        try:
            cmds = conn.parser.feed(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except RespError as exc:
            self.counts["protocol_errors"] += 1
            conn.closing = True
            cmds = exc.commands
            cmds.append(R.error("ERR " + str(exc)))   # a reply made already: after the others
        if conn.closing and not cmds:
            self.close(conn)
            return []
        if cmds:
            self.counts["commands"] += len(cmds)
            conn.busy = True
        return cmds

    def _handshake(self, conn: Conn) -> bool:
        """Go on with a TLS handshake; True once done (the edges of either
        direction bring it back here until then)."""
        try:
            conn.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (ssl.SSLError, OSError) as exc:
            log.info("RESP: TLS handshake with %s failed: %s", conn.session.addr, exc)
            self.close(conn)
            return False
        conn.handshaking = False
        return True

    # -- replies -----------------------------------------------------------------------
    def answer(self, conn: Conn, data: bytes) -> None:
        """The replies of ``conn``'s batch, in order, after those still unwritten."""
        conn.busy = False
        if self.conns.get(conn.fd) is not conn:
            return                 # it went away meanwhile (its number may be another's now)
        self._send(conn, data)

    def _send(self, conn: Conn, data: bytes) -> None:
        conn.out.append(data)
        conn.out_bytes += len(data)
        self.out_total += len(data)
        self._write(conn)

    def _write(self, conn: Conn) -> None:
        if conn.handshaking:
            if self._handshake(conn):
                conn.readable = True          # the client's first command may be here already
                self.ready.add(conn)
            return
        out = conn.out
        sent = 0
        while out:
            data = out[0]
            try:
                n = conn.sock.send(data)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                break                         # the next edge (out, or in for TLS) goes on
            except (OSError, ssl.SSLError):
                self.close(conn)
                return
            sent += n
            if n < len(data):
                out[0] = memoryview(data)[n:]
                break
            out.popleft()
        if sent:
            self.counts["bytes_out"] += sent
            conn.out_bytes -= sent
            self.out_total -= sent
        if out:
            if conn.out_bytes < OUT_STOP and conn.readable and self._may_read(conn):
                self.ready.add(conn)
            return
        if conn.closing or conn.session.quit:
            self.close(conn)
        elif not conn.busy and (conn.readable or (self.tls is not None and conn.sock.pending())):
            conn.readable = True
            self.ready.add(conn)

    def close(self, conn: Conn) -> None:
        if self.conns.get(conn.fd) is not conn:
            return                             # closed already
        del self.conns[conn.fd]
        self.ready.discard(conn)
        self.out_total -= conn.out_bytes
        conn.out.clear()
        conn.out_bytes = 0
        try:
            self.ep.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    # -- housekeeping ------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Let the listener accept again after a rest; close idle connections."""
        if self.resting_until and now >= self.resting_until:
            self.resting_until = 0.0
            self.ep.register(self.listener.fileno(), _IN)
        if self.timeout:
            for conn in [c for c in self.conns.values()
                         if not c.busy and now - c.last > self.timeout]:
                self.counts["timeouts"] += 1
                self.close(conn)

    def stats(self) -> dict:
        return {**self.counts, "connections": len(self.conns), "max_clients": self.max_clients,
                "port": self.port}

    def stop_listening(self) -> None:
        try:
            self.ep.unregister(self.listener.fileno())
        except (OSError, ValueError):
            pass
        self.listener.close()

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            if conn.out:
                conn.closing = True
                self._write(conn)
            self.close(conn)
        if self.listener.fileno() >= 0:
            self.stop_listening()
        self.ep.close()
