"""The router's RESP sockets: a TCP listener (``SO_REUSEPORT`` when several
routers share the port) and its connections, all in one epoll set whose
descriptor sits in the router's ZeroMQ poller beside its other sockets.

``poll()`` accepts, reads and writes what is ready and returns each
connection's commands of this loop turn; the router routes them as one
request (``loop.Router.on_resp``) and gives the replies back in order with
``answer()``. A connection has one such batch at a time: while it is in
flight or its replies are not all written, the connection is not read (its
client's bytes wait in the kernel, and then come as the next batch), so
what one connection costs is bounded: one command being parsed
(``parse.MAX_COMMAND``), one read (``_READ``), one batch's replies.

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
from typing import Any

from . import reply as R
from .commands import Session
from .parse import Parser, RespError

log = logging.getLogger("flin.router")

_READ = 256 * 1024         # bytes read from one connection per loop turn
_ACCEPTS = 256             # connections accepted per loop turn
_EMFILE_REST_S = 0.1       # the listener rests this long when out of descriptors
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLHUP | select.EPOLLERR


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

    __slots__ = ("sock", "fd", "parser", "out", "busy", "session", "last", "closing",
                 "handshaking", "mask")

    def __init__(self, sock: Any, session: Session, tls: bool) -> None:
        self.sock, self.fd, self.session = sock, sock.fileno(), session
        self.parser = Parser()
        self.out: Any = b""           # reply bytes not yet written
        self.busy = False             # a batch is in flight
        self.last = time.monotonic()  # last input
        self.closing = False          # close once ``out`` is written
        self.handshaking = tls
        self.mask = _IN


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
        self.resting_until = 0.0
        self.next_id = 1
        self.counts = {"accepted": 0, "rejected": 0, "commands": 0, "bytes_in": 0,
                       "bytes_out": 0, "protocol_errors": 0, "timeouts": 0}

    # -- the loop turn ---------------------------------------------------------------
    def poll(self) -> list[tuple[Conn, list]]:
        """What is ready now: accept, read, write; each connection's new commands."""
        got = []
        lfd = self.listener.fileno()
        for fd, ev in self.ep.poll(0, 4096):
            if fd == lfd:
                self._accept()
                continue
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if ev & _GONE and conn.busy:       # gone while its batch is out: stop hearing of it
                conn.closing = True
                self._want(conn, -1)
                continue
            if ev & _OUT:
                self._write(conn)
            if (ev & (_IN | _GONE) or (ev & _OUT and self.tls is not None)) \
                    and not conn.busy and not conn.out and fd in self.conns:
                cmds = self._read(conn)
                if cmds:
                    got.append((conn, cmds))
        return got

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
            self.ep.register(conn.fd, _IN)

    def _read(self, conn: Conn) -> list:
        """Read and parse what ``conn`` sent; its commands (or none)."""
        if conn.handshaking and not self._handshake(conn):
            return []
        sock = conn.sock
        chunks: list = []
        size = 0
        while size < _READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._want(conn, _OUT)
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
            if self.tls is None and len(data) < 65536:
                break
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
            self._want(conn, 0)
        return cmds

    def _handshake(self, conn: Conn) -> bool:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, _IN)
            return False
        except ssl.SSLWantWriteError:
            self._want(conn, _OUT)
            return False
        except (ssl.SSLError, OSError) as exc:
            log.info("RESP: TLS handshake with %s failed: %s", conn.session.addr, exc)
            self.close(conn)
            return False
        conn.handshaking = False
        return True

    # -- replies -----------------------------------------------------------------------
    def answer(self, conn: Conn, data: bytes) -> None:
        """The replies of ``conn``'s batch, in order; it is read again once they are out."""
        conn.busy = False
        if conn.fd not in self.conns:
            return                             # it went away meanwhile
        self._send(conn, data)

    def _send(self, conn: Conn, data: Any) -> None:
        conn.out = data
        self._write(conn)

    def _write(self, conn: Conn) -> None:
        if conn.handshaking:
            if self._handshake(conn):
                self._want(conn, _IN)
            return
        data = conn.out
        while data:
            try:
                n = conn.sock.send(data)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:
                break
            except (OSError, ssl.SSLError):
                self.close(conn)
                return
            self.counts["bytes_out"] += n
            data = memoryview(data)[n:] if n < len(data) else b""
        conn.out = data
        if data:
            self._want(conn, _OUT)
        elif conn.closing or conn.session.quit:
            self.close(conn)
        elif not conn.busy:
            self._want(conn, _IN)
            if self.tls is not None and conn.sock.pending():   # decrypted bytes already here
                self._want(conn, _IN | _OUT)

    def _want(self, conn: Conn, mask: int) -> None:
        """Listen for ``mask`` on ``conn`` (-1: for nothing more, not even a hang-up)."""
        if conn.mask != mask and conn.mask != -1 and conn.fd in self.conns:
            conn.mask = mask
            if mask == -1:
                self.ep.unregister(conn.fd)
            else:
                self.ep.modify(conn.fd, mask)

    def close(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        if conn.mask != -1:
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
