"""The router's end of its links to the shard workers: how batches reach a
worker and answers come back.

Two kinds, one interface, chosen by ``links_for(cfg)``:

- ``UnixLinks`` (the default, one host): a Unix stream socket in the
  owner-only ``DATA/run`` folder; every message is a 4-byte little-endian
  length and one msgpack frame. A ZeroMQ socket moves each message through
  an I/O thread at both ends; measured on the 2-core box, a worker spent
  ~57 µs of CPU per lone message over ZeroMQ and ~34 µs over a plain socket,
  ~24 µs against ~7 µs per message when several were queued. A worker's
  death closes its socket, so the router learns of it at once.
- ``ZmqLinks``: the ZeroMQ ROUTER/DEALER link, used when the link must be
  authenticated and encrypted (``--backend-keys``, CURVE), and in cluster
  mode, where workers of every node link to every router over TCP. A
  socket monitor sees a worker's connection drop; every shard with batches
  in flight is then probed at once (ROUTER_MANDATORY: a send to a gone
  identity fails), so those batches fail then, not at ``shard_timeout``.
  A replicated shard's primary is named ``shard-S-TERM``: a hello of a
  higher term takes the slot, a lower term is not heard (the term fence).

Both have ``send(shard, payload) -> bool`` (False: not connected),
``register(poller)``, ``handle(events)`` yielding ``(shard, payload)``
for every message that arrived, ``(shard, None)`` for a link that closed,
and ``heard(shard, now)``: when bytes last came from the shard. The
worker's end is ``flin.shardworker.link``; the framing is in ``protocol``.

Reading is bounded in bytes on the Unix link: a frame of ``linkframe.BIG_FRAME``
or more is read only while all such frames of this loop turn fit in ``READ_BYTES``
(one always may; ``release`` ends a turn); another waits unread in its socket
(its worker waits in ``send``), and counts as heard from meanwhile.
"""
from __future__ import annotations

import os
import select
import socket
import time
from typing import Any, Iterator

import zmq

from .. import protocol
from ..config import Config
from ..linkframe import LinkReader, link_header
from ..zmqflags import NOBLOCK, NOBLOCK_MORE
from .sockets import backend_socket

_CHUNK = 1 << 20                 # bytes read from a socket at a time
READ_BYTES = 256 << 20           # big shard frames read at once, in bytes


def links_for(cfg: Config) -> type:
    """The router-side link class for ``cfg``."""
    return ZmqLinks if cfg.zmq_links else UnixLinks


class _Conn:
    __slots__ = ("sock", "fd", "shard", "reader", "out", "rx_at", "reserved", "paused", "behind")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.shard: int | None = None     # known from its hello
        self.reader = LinkReader()
        self.out: list[memoryview] = []   # what the socket did not take yet
        self.rx_at = 0.0                  # when bytes last came
        self.reserved = 0                 # bytes of READ_BYTES its big frame holds
        self.paused = False               # a big frame waits for READ_BYTES to free up
        self.behind = False               # the last read left bytes in the socket


class UnixLinks:
    """The router's end of the Unix-socket links."""

    def __init__(self, cfg: Config, ctx: zmq.Context, gate: Any, shards: int) -> None:
        self.path = cfg.link_path
        # one left by a killed router: the supervisor owns the folder (its
        # lock), so no live router of another cluster can be using it
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.bound = os.stat(self.path).st_ino   # close() removes this socket, no other
        self.listener.listen(max(128, shards))
        self.listener.setblocking(False)
        self.conns: dict[int, _Conn] = {}
        self.by_shard: list[_Conn | None] = [None] * shards
        # the links are polled with epoll, whose one fd is in the loop's zmq poller:
        # zmq_poll over 65 fds: 8.3 us a call, this way 2.4 (python -m flin_perf.microbench)
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.reading = 0                  # bytes reserved by the big frames being read
        self.paused: list[_Conn] = []     # conns whose big frame waits, in order
        self.big_rx_at = 0.0              # when bytes of a big frame being read last came
        self.finished: list[_Conn] = []   # conns whose big frame was read this loop turn

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.ep.fileno(), zmq.POLLIN)

    def send(self, shard: int, payload: bytes) -> bool:
        conn = self.by_shard[shard]
        if conn is None:
            return False
        header = link_header(len(payload))
        if conn.out:                          # keep the order: queue behind what waits
            conn.out += (memoryview(header), memoryview(payload))
            return True
        try:
            sent = conn.sock.sendmsg((header, payload))
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return False
        if sent < 4 + len(payload):           # the rest, without copying the payload
            if sent < 4:
                conn.out += (memoryview(header)[sent:], memoryview(payload))
            else:
                conn.out.append(memoryview(payload)[sent - 4:])
            self._events(conn)
        return True

    def heard(self, shard: int, now: float) -> float:
        """When bytes last came from ``shard`` (while the router holds its big
        frame back: when bytes of the big frames it waits for last came)."""
        conn = self.by_shard[shard]
        if conn is None:
            return 0.0
        return max(conn.rx_at, self.big_rx_at) if conn.paused else conn.rx_at

    def behind(self, shard: int) -> bool:
        """True unless ``shard`` is linked and everything it had sent when it
        was last read was read (a big frame held back, or cut short at the
        end of a turn, leaves the rest unread): the read cache may answer for
        its keys only then (``readcache.py``)."""
        conn = self.by_shard[shard]
        return conn is None or conn.paused or conn.behind

    def _events(self, conn: _Conn) -> None:
        self.ep.modify(conn.fd, (0 if conn.paused else select.EPOLLIN)
                       | (select.EPOLLOUT if conn.out else 0))

    def handle(self, events: dict) -> Iterator[tuple[int, bytes | None]]:
        """What the links have (``events``: the loop's poll, which holds our epoll fd)."""
        if self.ep.fileno() in events:
            yield from self.handle_now()

    def handle_now(self) -> Iterator[tuple[int, bytes | None]]:
        """What the links have now, without the loop's poll."""
        listener = self.listener.fileno()
        for fd, ev in self.ep.poll(0):
            if fd == listener:
                self._accept()
                continue
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if ev & select.EPOLLOUT:
                self._write(conn)
            if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                yield from self._read(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[conn.fd] = conn
            self.ep.register(conn.fd, select.EPOLLIN)

    def _read(self, conn: _Conn) -> Iterator[tuple[int, bytes | None]]:
        closed = False
        reader = conn.reader
        frames: list = []
        big_moved = False
        conn.behind = True
        while True:
            if (reader.big is not None and not conn.reserved
                    and not self._admit(conn, len(reader.big))):
                break                         # paused until READ_BYTES frees up
            try:
                got = reader.read(conn.sock)
            except (BlockingIOError, InterruptedError):
                conn.behind = False
                break
            except OSError:
                got = 0
            if not got:
                closed = True
                break
            big_moved = big_moved or bool(conn.reserved)
            done = reader.frames()
            if done:
                frames += done
                if conn.reserved and reader.big is None:
                    self.finished.append(conn)    # whole: handled before any more is read
                    break
            if got < _CHUNK and reader.big is None:
                conn.behind = False           # a short read: nothing more was there
                break
        conn.rx_at = time.monotonic()
        if big_moved:
            self.big_rx_at = conn.rx_at
        for frame in frames:
            if conn.shard is None:            # the first message says which shard this is
                try:
                    msg_id, body = protocol.decode(frame)
                    shard = int(body[0]) if msg_id == protocol.HELLO_ID else -1
                except Exception:
                    shard = -1
                if not 0 <= shard < len(self.by_shard):
                    closed = True
                    break
                old = self.by_shard[shard]
                if old is not None and old is not conn:
                    self._drop(old)           # a restarted worker replaces its predecessor
                conn.shard = shard
                self.by_shard[shard] = conn
            yield conn.shard, frame
        if closed:
            lost = conn.shard
            self._close(conn)
            if lost is not None and self.by_shard[lost] is None:
                yield lost, None

    def release(self) -> None:
        """The loop turn is over (its replies sent): the big frames read in it
        no longer count against ``READ_BYTES``."""
        if self.finished:
            for conn in self.finished:
                if conn.reserved:
                    self._release(conn)
            self.finished.clear()

    def _admit(self, conn: _Conn, size: int) -> bool:
        """May ``conn`` read its big frame of ``size`` bytes now? If not, it
        waits (not polled for input) until ``_release`` lets it."""
        if self.reading and self.reading + size > READ_BYTES:
            if not conn.paused:
                conn.paused = True
                self.paused.append(conn)
                self._events(conn)
            return False
        if conn.paused:
            conn.paused = False
            self.paused.remove(conn)
            self._events(conn)
        self.reading += size
        conn.reserved = size
        return True

    def _release(self, conn: _Conn) -> None:
        """``conn``'s big frame is read (or gone): let the waiting ones go."""
        self.reading -= conn.reserved
        conn.reserved = 0
        while self.paused:
            nxt = self.paused.pop(0)
            nxt.paused = False
            if nxt.fd in self.conns:
                self._events(nxt)             # polled again: it asks to be admitted
            if self.reading + len(nxt.reader.big or b"") > READ_BYTES:
                break

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            chunk = conn.out[0]
            try:
                sent = conn.sock.send(chunk)
            except BlockingIOError:
                return
            except OSError:
                self._close(conn)
                return
            if sent < len(chunk):
                conn.out[0] = chunk[sent:]
                return
            conn.out.pop(0)
        self._events(conn)

    def _drop(self, conn: _Conn) -> None:
        if conn.reserved:
            self._release(conn)
        if conn.paused:
            conn.paused = False
            self.paused.remove(conn)
        if self.conns.pop(conn.fd, None) is not None:
            try:
                self.ep.unregister(conn.fd)
            except OSError:
                pass
        conn.sock.close()

    def _close(self, conn: _Conn) -> None:
        if conn.shard is not None and self.by_shard[conn.shard] is conn:
            self.by_shard[conn.shard] = None
        self._drop(conn)

    def grow(self, shards: int) -> None:
        """Take links from ``shards`` workers (a reshard's new ones)."""
        self.by_shard += [None] * (shards - len(self.by_shard))

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.ep.close()
        self.listener.close()
        try:
            if os.stat(self.path).st_ino == self.bound:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


class ZmqLinks:
    """The router's end of the ZeroMQ links (CURVE when ``--backend-keys``)."""

    def __init__(self, cfg: Config, ctx: zmq.Context, gate: Any, shards: int) -> None:
        self.sock = backend_socket(ctx, gate, cfg)
        self.idents = [b"shard-%d" % s for s in range(shards)]
        self.terms = [-1] * shards         # a replicated primary's term, by its name
        self.shards = shards
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.inflight: Any = None          # the router's batches in flight, per shard
        self.probe = protocol.encode(protocol.PROBE_ID, [[protocol.PING]])   # its answer is ignored

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)

    def grow(self, shards: int) -> None:
        self.terms += [-1] * (shards - len(self.idents))
        self.idents += [b"shard-%d" % s for s in range(len(self.idents), shards)]
        self.shards = max(self.shards, shards)

    def heard(self, shard: int, now: float) -> float:
        return 0.0                  # whole messages only: the router's own clock tells

    def behind(self, shard: int) -> bool:
        return True                 # no pool of routers keeps a read cache over ZeroMQ

    def release(self) -> None:
        pass

    def send(self, shard: int, payload: bytes) -> bool:
        try:
            self.sock.send(self.idents[shard], NOBLOCK_MORE)
            self.sock.send(payload, NOBLOCK)
        except zmq.ZMQError:       # ROUTER_MANDATORY: the worker is not connected
            return False
        return True

    def handle_now(self) -> Iterator[tuple[int, bytes | None]]:
        return self.handle({self.sock: zmq.POLLIN})

    def handle(self, events: dict) -> Iterator[tuple[int, bytes | None]]:
        if self.monitor in events:
            yield from self._disconnected()
        if self.sock not in events:
            return
        for _ in range(2000):
            try:
                frames = self.sock.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            ident = frames[0]
            try:
                num, _, named = ident[6:].partition(b"-")
                shard, term = int(num), int(named or -1)
            except ValueError:
                continue
            if not 0 <= shard < self.shards:
                continue
            if term >= 0 and ident != self.idents[shard]:   # the term fence (above)
                if term < self.terms[shard] or protocol.request_id_of(frames[-1]):
                    continue
                self.idents[shard], self.terms[shard] = ident, term
            yield shard, frames[-1]

    def _disconnected(self) -> Iterator[tuple[int, None]]:
        """A connection dropped: shards with batches in flight that take no message are lost."""
        while True:
            try:
                self.monitor.recv_multipart(NOBLOCK)
            except zmq.Again:
                break
        for shard in range(self.shards):
            if self.inflight is not None and self.inflight[shard] \
                    and not self.send(shard, self.probe):
                yield shard, None

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
