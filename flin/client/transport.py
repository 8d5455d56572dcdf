"""A Client's transport: one DEALER socket per thread, created lazily.

Why a socket per thread (``threading.local``) and not a pool checked out per
call: a ZeroMQ socket must be used by one thread at a time, and a thread-local
needs no lock and no check-out/check-in on the hot path; a thread's call costs
one ``threading.local`` attribute read more than a single-socket client did.
Replies also stay simple: each socket has its own request ids, early replies
and queue (``Conn``), so a thread only ever sees the answers to its own
requests, and a timeout resets (Lazy Pirate) only that thread's socket. A
pool would cost a lock per call, and a socket could carry a late reply of a
previous borrower's timed-out request into the next borrower's queue.

What it costs: one DEALER socket per thread that has called, i.e. two file
descriptors here (the socket's mailbox and its ipc/tcp connection; libzmq's
I/O thread is shared) and a connection on the router; a thread's first call
connects (and with CURVE, handshakes) first.

Lifetime: ``Threads.close()`` closes every thread's socket (call it when no
other thread is in a call on the client; a thread that calls afterwards opens
a new socket). The sockets of threads that have exited are closed by the next
thread's first call and by ``close()``. Closing a socket from a thread other
than the one that used it is what the ZeroMQ guide allows for a socket
migrated with a full memory barrier: its thread is gone (or, at ``close()``,
idle), and the GIL handover and ``Threads``' lock order the accesses.
"""
from __future__ import annotations

import errno
import threading
import time
import weakref
from collections import deque
from typing import Any, Protocol, TypeVar

import zmq

from .. import curve, errors, protocol
from ..curve import CurveKeys
from ..protocol import ErrorReply
from ..zmqflags import NOBLOCK
from .pool import Pool, RouterLost, Watch, join_pool

_WATCH_S = 0.05      # with several routers: how often a wait checks whether one went away
HEARTBEAT_MS = 1000  # ZMTP heartbeats to each router; 3 missed: disconnected


class Owner(Protocol):
    """What a connection reads from its client (at each use: ``timeout`` may change)."""
    endpoint: str
    timeout: float
    _curve: CurveKeys | None
    _pool: Pool


S = TypeVar("S", bound="zmq.Socket[Any]")


def open_socket(ctx: "zmq.Context[S]", owner: Owner) -> S:
    """A DEALER socket of ``ctx`` connected to the owner's endpoint,
    CURVE-secured if it has keys; ``InvalidArgument`` for an endpoint ZeroMQ
    cannot use, ``ConnectionFailed`` if it cannot connect."""
    endpoint = owner.endpoint
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IMMEDIATE, 1)   # queue nothing for a router that is not there
    # a router that stops answering ZMTP heartbeats (stopped, hung, cut off: its
    # I/O thread answers them whatever its loop does) is disconnected, so that
    # a pool's other routers take its calls (``pool.Watch``)
    s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
    # no MAXMSGSIZE: replies come from the trusted router, and an MGET of
    # 64 MiB values, or several replies sharing a frame, may exceed any cap
    curve.secure_client(s, owner._curve)
    try:
        s.connect(endpoint)
    except UnicodeError:
        s.close(linger=0)
        raise errors.InvalidArgument("endpoint %r is not UTF-8" % (endpoint,)) from None
    except zmq.ZMQError as exc:
        s.close(linger=0)
        why = zmq.strerror(exc.errno or 0)
        if exc.errno in (errno.EINVAL, zmq.EPROTONOSUPPORT, zmq.ENOCOMPATPROTO):
            raise errors.InvalidArgument("endpoint %r: %s (expected tcp://HOST:PORT or "
                                         "ipc://PATH)" % (endpoint, why)) from None
        raise errors.ConnectionFailed("cannot connect to %s: %s" % (endpoint, why)) from None
    return s


class Conn:
    """One thread's socket and the state of its requests in flight."""
    __slots__ = ("owner", "sock", "rid", "early", "ready", "asking", "joined", "watch",
                 "abandoned")

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.sock: zmq.Socket[bytes] | None = None
        self.rid = 0
        self.early: dict[int, Any] = {}   # replies that came while awaiting another
        self.ready: deque[tuple[int, Any]] = deque()   # received, not yet handed out
        self.asking = 0                   # the id of our ROUTERS request in flight (``Pool``)
        self.joined = False               # the socket is connected to the other routers
        self.watch: Watch | None = None   # with other routers: their disconnections
        self.abandoned: set[int] = set()  # requests resent after their router went away

    def socket(self) -> zmq.Socket[bytes]:
        if self.sock is None:
            self.sock = open_socket(zmq.Context.instance(), self.owner)
            self.joined = False
        if not self.joined and self.owner._pool.others is not None:
            self.joined = True
            if self.owner._pool.others:
                join_pool(self.sock, self.owner._pool)
                self.watch = Watch(self.sock)
        return self.sock

    def reset(self) -> None:
        """Drop the socket and whatever it still queued (the Lazy Pirate way),
        so a late or stale request is never delivered to a restarted router."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
            self.owner._pool.forget()
        self.asking = 0
        self.early.clear()
        self.ready.clear()
        self.abandoned.clear()

    def submit_many(self, requests: list[list[Any]], timeout: float | None) -> list[int]:
        if sum(len(r) for r in requests) > protocol.MAX_ITEMS:  # the router would refuse the frame whole
            raise errors.TooLarge("more than %d commands in one frame" % protocol.MAX_ITEMS)
        sock = self.socket()
        first = self.rid + 1
        self.rid += len(requests)
        rids = list(range(first, self.rid + 1))
        numbered = list(zip(rids, requests))
        if not self.asking and self.owner._pool.wanted() and len(numbered) < protocol.MAX_ITEMS:
            self.rid += 1
            self.asking = self.rid
            numbered.append((self.rid, [[protocol.ROUTERS]]))
        frame = protocol.encode_requests(numbered)
        if self.watch is not None:
            self.watch.lost()             # what dropped before this send cannot hold it
        if len(frame) > protocol.MAX_MESSAGE:  # the router's libzmq would drop us unanswered
            raise errors.TooLarge("request of %d bytes exceeds the %d-byte message limit "
                                  "(values are limited to %d bytes)"
                                  % (len(frame), protocol.MAX_MESSAGE, protocol.MAX_VALUE))
        wait_ms = int(1000 * (self.owner.timeout if timeout is None else timeout))
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            if not sock.poll(wait_ms, zmq.POLLOUT):
                self.reset()
                raise errors.ConnectionFailed("cannot reach %s%s" % (
                    self.owner.endpoint, " (or the CURVE handshake failed: check the keys)"
                    if self.owner._curve else "")) from None
            sock.send(frame, zmq.NOBLOCK)
        return rids

    def receive(self, timeout: float | None) -> tuple[int, Any]:
        if not self.ready:
            self.ready.extend(self.receive_all(timeout))
        return self.ready.popleft()

    def receive_all(self, timeout: float | None) -> list[tuple[int, Any]]:
        asked = self.asking
        ready = self._receive_all(timeout)
        if ready or not asked:
            return ready
        deadline = time.monotonic() + (self.owner.timeout if timeout is None else timeout)
        while not ready:                 # the frame held only our ROUTERS answer
            ready = self._receive_all(max(deadline - time.monotonic(), 0.001))
        return ready

    def _receive_all(self, timeout: float | None) -> list[tuple[int, Any]]:
        ready = list(self.ready)
        self.ready.clear()
        sock = self.socket()
        own = self.owner.timeout
        if not ready and not sock.poll(int(1000 * (own if timeout is None else timeout))):
            raise errors.Timeout("no reply from %s within %.1fs" % (self.owner.endpoint, timeout or own))
        try:
            while True:
                try:
                    frame = sock.recv(NOBLOCK)
                except zmq.Again:
                    break
                ready.extend(protocol.decode_replies(frame))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise errors.ProtocolError("undecodable reply: %s" % exc) from None
        if self.asking:
            ready = self._learn(ready)
        return ready

    def _learn(self, ready: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """Take the answer to our ROUTERS request out of ``ready``, if it came."""
        for i, (rid, results) in enumerate(ready):
            if rid == self.asking:
                self.asking = 0
                self.owner._pool.learn(results)
                self.socket()             # connects to the others now
                return ready[:i] + ready[i + 1:]
        return ready

    def collect(self, rid: int, timeout: float | None, resend: bool = False) -> Any:
        """The results of ``rid``; ``Timeout`` past ``timeout``. With ``resend``
        (the caller may send it again) and several routers: ``RouterLost`` as
        soon as a router connection drops while it waits (checked every
        ``_WATCH_S``), for the caller to resend it to the routers that are up."""
        if rid in self.early:
            return self.early.pop(rid)
        deadline = time.monotonic() + (self.owner.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.reset()
                raise errors.Timeout("no reply from %s in time (the client's timeout is "
                                     "%.1fs)" % (self.owner.endpoint, self.owner.timeout))
            watch = self.watch if resend else None
            try:
                got, results = self.receive(left if watch is None else min(left, _WATCH_S))
            except errors.Timeout:
                if watch is None or time.monotonic() >= deadline:
                    self.reset()
                    raise errors.Timeout("no reply from %s in time (the client's timeout is "
                                         "%.1fs)" % (self.owner.endpoint, self.owner.timeout)) from None
                if watch.lost():
                    self.abandoned.add(rid)   # its late reply, if one comes, is dropped
                    raise RouterLost("a router went away with the request in flight") from None
                continue
            if got == rid:
                return results
            if got == 0 and type(results) is ErrorReply:  # the router could not read our id
                return results
            if got in self.abandoned:
                self.abandoned.discard(got)
            elif got > self.rid - 10_000:
                self.early[got] = results

    def execute(self, commands: list[Any], timeout: float | None,
                resend: bool = False) -> list[Any]:
        results = self.collect(self.submit_many([commands], timeout)[0], timeout, resend)
        if type(results) is ErrorReply:
            return [results] * len(commands)
        return results  # type: ignore[no-any-return]


class _Token:
    """Held only by a thread's ``threading.local`` slot: dead once the thread is."""
    __slots__ = ("__weakref__",)


class _Local(threading.local):
    conn: Conn

    def __init__(self, threads: "Threads") -> None:   # run in each thread at its first use
        token = _Token()
        self.token = token
        self.conn = threads.register(token)


class Threads:
    """Every thread's ``Conn`` of one client; ``local.conn`` is the calling thread's."""

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._conns: list[tuple[weakref.ref[_Token], Conn]] = []
        self.local = _Local(self)

    def register(self, token: _Token) -> Conn:
        conn = Conn(self._owner)
        with self._lock:
            self._sweep()
            self._conns.append((weakref.ref(token), conn))
        return conn

    def _sweep(self) -> None:
        """Close the sockets of threads that have exited (under the lock)."""
        live = []
        for ref, conn in self._conns:
            if ref() is None:
                conn.reset()
            else:
                live.append((ref, conn))
        self._conns = live

    def close(self) -> None:
        with self._lock:
            self._sweep()
            for _, conn in self._conns:
                conn.reset()
