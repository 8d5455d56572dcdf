"""The asyncio client's transport: ONE DEALER socket shared by every coroutine
of a client, requests multiplexed by id and coalesced.

- The socket is a plain ``zmq.Socket`` whose ``FD`` is in the event loop
  (``loop.add_reader``), not a ``zmq.asyncio`` one: zmq.asyncio costs a
  Future, an enum conversion and a callback a frame (~15 % of the client's
  CPU per GET under py-spy). ZeroMQ's FD is edge-triggered: it signals that
  the socket's state changed, and ``EVENTS`` says how. So every wakeup, and
  every send (a send may take an edge), reads ``EVENTS`` and drains the
  socket while it is readable (``_ready``). Nothing else calls the socket:
  the edge rule holds because no other code can take an edge unseen.
- Multiplexing: ``pending`` maps request id -> Future. ``_ready`` decodes
  each reply frame and resolves the futures of the ids it carries; a reply
  whose id is not pending (its caller timed out or was cancelled) is dropped.
- Coalescing: ``submit`` only queues the request and schedules ``_flush``
  with ``loop.call_soon``; every request issued in the same event-loop turn
  goes out in one frame (``protocol.encode_requests``), split only to stay
  under the router's limits (``MAX_ITEMS`` commands, ``MAX_MESSAGE`` bytes).
  A request whose caller is gone before the flush is never sent.
- Timeouts and cancellation: ONE timer per client fails the calls past their
  deadline (``deadlines``). Whichever way a call leaves (result, timeout, cancellation), ``forget``
  removes its future, so nothing leaks and its late reply is dropped. The
  socket stays usable.
- The reset rule: the sync client resets (Lazy Pirate) its thread's socket on
  a timeout so that no stale request of its reaches a restarted router. Here
  the socket is shared, so a timeout must not reset it under the other
  coroutines' requests. Instead a timeout marks the socket stale, and it is
  replaced as soon as no request is pending (nobody else is using it): the
  same guarantee once the client is idle, without failing healthy calls. A
  router that restarts drops its connection, and with ``IMMEDIATE`` libzmq
  keeps no queue for a peer that is gone, so requests already handed to
  libzmq do not reach the new router either. A frame the socket does not take
  (no connection yet: ``IMMEDIATE``) waits in ``unsent`` and goes out, in
  order, when ``EVENTS`` says the socket can send. One never sent (no router
  to connect to within the timeout) is withdrawn: the call raises
  ``ConnectionFailed``, as the sync client does, and so does every other
  request waiting in that unsent queue, which would never be sent either.
- Loops: the socket belongs to the loop that opened it; a call from another
  loop (a second ``asyncio.run``) opens a new one. Works on uvloop (it has
  ``add_reader``).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import zmq

from .. import errors, protocol
from ..protocol import ErrorReply
from ..zmqflags import NOBLOCK
from .deadlines import Deadlines, Expired
from .pool import RouterLost, Watch, join_pool
from .transport import Owner, open_socket


class Mux:
    """One client's shared socket and its requests in flight (one event loop)."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.sock: zmq.Socket[bytes] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rid = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.outbox: list[tuple[int, list[Any]]] = []
        self.flushing = False
        self.unsent: deque[tuple[bytes, list[int]]] = deque()   # (frame, ids) not yet taken
        self.stale = False
        self.frames = 0          # frames sent: one per flush unless split (tests read it)
        self.asking = 0          # the id of our ROUTERS request in flight (``transport.Pool``)
        self.joined = False      # the socket is connected to the other routers
        self.mon: Watch | None = None   # with other routers: their disconnections
        self.watching = False    # ``mon`` is in the loop (while calls are pending)
        self.resendable: set[int] = set()   # ids whose callers may send them again
        self.deadlines = Deadlines(self.pending)

    def socket(self) -> zmq.Socket[bytes]:
        loop = asyncio.get_running_loop()
        if self.sock is not None and self.loop is not loop:
            self.reset()   # a socket of a loop that is gone (or another one)
        if self.sock is None:
            sock: zmq.Socket[bytes] = open_socket(zmq.Context.instance(), self.owner)
            self.sock, self.loop = sock, loop
            loop.add_reader(sock.FD, self._ready)
            self.joined = False
        if not self.joined and self.owner._pool.others is not None:
            self.joined = True
            if self.owner._pool.others:
                join_pool(self.sock, self.owner._pool)
                self.mon = Watch(self.sock)
        return self.sock

    def _live_loop(self) -> asyncio.AbstractEventLoop | None:
        loop = self.loop
        return loop if loop is not None and not loop.is_closed() else None

    def reset(self) -> None:
        """Close the socket, failing whatever is still pending or unsent."""
        for fut in self.pending.values():   # (none left of a loop that has ended)
            if not fut.done() and not fut.get_loop().is_closed():
                fut.set_exception(errors.ConnectionFailed("the client was closed"))
        self.pending.clear()
        self.outbox.clear()
        self.unsent.clear()
        self._unwatch()
        loop = self._live_loop()
        if self.mon is not None:
            self.mon.close()
            self.mon = None
        if self.sock is not None:
            if loop is not None:
                loop.remove_reader(self.sock.FD)
            self.sock.close(linger=0)
            self.sock = None
            self.owner._pool.forget()
        self.stale = False
        self.asking = 0
        self.resendable.clear()
        self.deadlines.clear(loop)

    # -- sending --------------------------------------------------------------------
    def submit(self, commands: list[Any], loop: asyncio.AbstractEventLoop | None = None
               ) -> tuple[int, asyncio.Future[Any]]:
        """Queue one request for this turn's frame; its id and the future of its results."""
        if len(commands) > protocol.MAX_ITEMS:
            raise errors.TooLarge("more than %d commands in one frame" % protocol.MAX_ITEMS)
        if loop is None:
            loop = asyncio.get_running_loop()
        sock = self.sock
        if sock is None or self.loop is not loop or not self.joined:
            sock = self.socket()
        self.rid += 1
        rid = self.rid
        fut: asyncio.Future[Any] = loop.create_future()
        self.pending[rid] = fut
        self.outbox.append((rid, commands))
        if not self.joined and not self.asking and self.owner._pool.wanted():   # learn the pool in passing
            self.rid += 1
            self.asking = self.rid
            asking = loop.create_future()
            self.pending[self.rid] = asking
            self.outbox.append((self.rid, [[protocol.ROUTERS]]))
            asking.add_done_callback(self._learned)
        if not self.flushing:
            self.flushing = True
            loop.call_soon(self._flush)
        if self.mon is not None and not self.watching:
            self._watch(loop, self.mon)
        return rid, fut                   # (not self.rid: a ROUTERS request may follow it)

    def _flush(self) -> None:
        self.flushing = False
        todo = [(rid, cmds) for rid, cmds in self.outbox if rid in self.pending]
        self.outbox = []
        chunk: list[tuple[int, list[Any]]] = []
        items = 0
        for rid, cmds in todo:
            if chunk and items + len(cmds) > protocol.MAX_ITEMS:
                self._send(chunk)
                chunk, items = [], 0
            chunk.append((rid, cmds))
            items += len(cmds)
        if chunk:
            self._send(chunk)

    def _send(self, chunk: list[tuple[int, list[Any]]]) -> None:
        frame = protocol.encode_requests(chunk)
        if len(frame) > protocol.MAX_MESSAGE:
            if len(chunk) > 1:   # halve until each frame fits
                half = len(chunk) // 2
                self._send(chunk[:half])
                self._send(chunk[half:])
                return
            fut = self.pending.pop(chunk[0][0], None)
            if fut is not None and not fut.done():
                fut.set_exception(errors.TooLarge(
                    "request of %d bytes exceeds the %d-byte message limit (values are "
                    "limited to %d bytes)" % (len(frame), protocol.MAX_MESSAGE, protocol.MAX_VALUE)))
            return
        sock = self.sock
        if sock is None:
            return
        self.frames += 1
        if not self.unsent:
            try:
                sock.send(frame, NOBLOCK)
            except zmq.Again:   # no connection yet (IMMEDIATE): queued until there is one
                self.unsent.append((frame, [rid for rid, _ in chunk]))
            except zmq.ZMQError as exc:
                self._fail_all(errors.ConnectionFailed("%s: %s" % (self.owner.endpoint, exc)))
                return
        else:
            self.unsent.append((frame, [rid for rid, _ in chunk]))
        self._ready()   # the send may have taken the FD's edge: look at EVENTS now

    def _send_unsent(self, sock: zmq.Socket[bytes]) -> None:
        """Send the queued frames, in order, while the socket takes them."""
        unsent = self.unsent
        while unsent:
            try:
                sock.send(unsent[0][0], NOBLOCK)
            except zmq.Again:
                return
            unsent.popleft()

    def _withdraw_unsent(self, endpoint: str) -> None:
        """Drop every frame still waiting for a connection and fail its
        requests with ``ConnectionFailed``."""
        unsent, self.unsent = self.unsent, deque()
        exc = errors.ConnectionFailed("cannot reach %s%s" % (
            endpoint, " (or the CURVE handshake failed: check the keys)"
            if self.owner._curve else ""))
        for _, rids in unsent:
            for rid in rids:
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)

    # -- receiving ------------------------------------------------------------------
    def _ready(self) -> None:
        """The socket's FD fired, or we sent: send what waits while it can be
        sent, and take every reply frame there is (``EVENTS`` until it says
        neither), resolving their futures."""
        sock = self.sock
        pending = self.pending
        while sock is not None and sock is self.sock:
            try:
                events = sock.get(zmq.EVENTS)
                if self.unsent and events & zmq.POLLOUT:  # type: ignore[operator,arg-type]
                    self._send_unsent(sock)
                if not events & zmq.POLLIN:  # type: ignore[operator,arg-type]
                    return
                frame = sock.recv(NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:   # the socket failed under us: nobody will be answered
                self._fail_all(errors.ConnectionFailed("%s: %s" % (self.owner.endpoint, exc)))
                return
            try:
                replies = protocol.decode_replies(frame)
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                self._fail_all(errors.ProtocolError("undecodable reply: %s" % exc))
                return
            for rid, results in replies:
                if rid == 0 and type(results) is ErrorReply:
                    # the router could not read a frame's id: which frame is unknown,
                    # and our frames are checked against its limits before sending
                    self._fail_all(errors.error_for_code(results.code, results.message))
                    return
                fut = pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(results)
                # else: a late reply to a call that timed out or was cancelled: dropped

    def _learned(self, fut: "asyncio.Future[Any]") -> None:
        """The ROUTERS answer came: connect to the other routers."""
        self.asking = 0
        if not fut.cancelled() and fut.exception() is None:
            self.owner._pool.learn(fut.result())
            if self.sock is not None:
                self.socket()

    def _watch(self, loop: asyncio.AbstractEventLoop, mon: Watch) -> None:
        """While requests are pending, the monitor is in the loop: when a
        router connection drops, those whose callers may resend them fail
        with ``RouterLost`` (a ``Timeout``: ``retry`` resends them to the
        routers that are up). What dropped while nothing was pending is old
        news: it is read and dropped first."""
        mon.lost()
        self.watching = True
        loop.add_reader(mon.mon.FD, self._on_monitor)

    def _on_monitor(self) -> None:
        if self.mon is None or not self.mon.lost():
            return
        lost = RouterLost("a router went away with the request in flight")
        for rid in list(self.resendable):
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(lost)
        self.resendable.clear()

    def _unwatch(self) -> None:
        loop = self._live_loop()
        if self.watching and self.mon is not None and loop is not None:
            loop.remove_reader(self.mon.mon.FD)
        self.watching = False

    def _fail_all(self, exc: Exception) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self.pending.clear()
        self.stale = True
        self._idle()

    def forget(self, rid: int) -> None:
        """Drop request ``rid`` (answered, timed out or cancelled)."""
        self.pending.pop(rid, None)
        if len(self.pending) == 1 and self.asking in self.pending:   # asked in passing only
            self.pending.pop(self.asking).cancel()
            self.asking = 0
        if not self.pending:
            self._idle()

    def _idle(self) -> None:
        self._unwatch()
        if self.stale and not self.outbox:
            self.reset()   # nobody else is using it: drop whatever it still queued

    # -- one request ----------------------------------------------------------------
    def start(self, commands: list[Any], timeout: float, resend: bool = False
              ) -> tuple[int, "asyncio.Future[Any]", asyncio.TimerHandle | None]:
        """Queue ``commands`` as one request (coalesced with this turn's
        others) with its deadline: ``(id, future of the raw results, its own
        timer or None)``. The caller awaits the future, turns ``Expired``
        into ``expired()``'s error, and calls ``done()`` however it ends.
        ``execute`` is the whole of it; ``aio.Client._run`` inlines it (one
        coroutine less per call)."""
        loop = asyncio.get_running_loop()
        rid, fut = self.submit(commands, loop)
        if resend:
            self.resendable.add(rid)
        return rid, fut, self.deadlines.add(loop, loop.time() + timeout, rid, fut)

    def expired(self, rid: int, timeout: float) -> errors.TransportError:
        """What a request whose deadline passed raises: ``ConnectionFailed``
        if its frame never went out, else ``Timeout``."""
        self.stale = True
        if any(rid in rids for _, rids in self.unsent):
            self._withdraw_unsent(self.owner.endpoint)
            return errors.ConnectionFailed("cannot reach %s" % self.owner.endpoint)
        return errors.Timeout("no reply from %s within %.1fs" % (self.owner.endpoint, timeout))

    def done(self, rid: int, timer: asyncio.TimerHandle | None) -> None:
        """Request ``rid`` has ended (result, error, timeout or cancellation)."""
        if timer is not None:
            timer.cancel()
        self.resendable.discard(rid)
        self.forget(rid)

    async def execute(self, commands: list[Any], timeout: float,
                      resend: bool = False) -> list[Any]:
        """Send ``commands`` as one request (coalesced with this turn's others)
        and return their raw results; ``Timeout`` after ``timeout`` seconds,
        ``ConnectionFailed`` if it could not even be sent by then. With
        ``resend`` (the caller may send it again): ``RouterLost`` as soon as a
        router of the pool goes away while it waits."""
        rid, fut, timer = self.start(commands, timeout, resend)
        try:
            results = await fut
        except Expired:
            raise self.expired(rid, timeout) from None
        finally:
            self.done(rid, timer)
        if type(results) is ErrorReply:
            return [results] * len(commands)
        return results  # type: ignore[no-any-return]
