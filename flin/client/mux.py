"""The asyncio client's transport: ONE ``zmq.asyncio`` DEALER socket shared by
every coroutine of a client, requests multiplexed by id and coalesced.

- Multiplexing: ``pending`` maps request id -> Future. One reader task,
  started on demand while anything is pending, decodes each reply frame and
  resolves the futures of the ids it carries; a reply whose id is not pending
  (its caller timed out or was cancelled) is dropped.
- Coalescing: ``submit`` only queues the request and schedules ``_flush``
  with ``loop.call_soon``; every request issued in the same event-loop turn
  goes out in one frame (``protocol.encode_requests``), split only to stay
  under the router's limits (``MAX_ITEMS`` commands, ``MAX_MESSAGE`` bytes).
  A request whose caller is gone before the flush is never sent.
- Timeouts and cancellation: a call's deadline goes into ``deadlines``, in the
  order of the calls (one client timeout: in deadline order), and ONE timer
  per client sweeps it (``_sweep``: every ``SWEEP_S`` while calls are
  pending), failing the calls past their deadline; a call with a deadline
  before the last one's (a shorter timeout) gets a timer of its own. A timer
  per call cost ~15 % of the client's CPU per SET (``perf/aio_set.py``).
  Whichever way a call leaves (result, timeout, cancellation), ``forget``
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
  libzmq do not reach the new router either. A frame never sent (no router to
  connect to within the timeout) is withdrawn: the call raises
  ``ConnectionFailed``, as the sync client does, and so does every other
  request waiting in that unsent queue, which would never be sent either.
- Loops: the socket belongs to the loop that opened it; a call from another
  loop (a second ``asyncio.run``) opens a new one. Works on uvloop (pyzmq
  uses the loop's ``add_reader``).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import zmq
import zmq.asyncio

from .. import errors, protocol
from ..protocol import ErrorReply
from .pool import RouterLost, join_pool
from .transport import Owner, open_socket


SWEEP_S = 0.1            # the deadline sweep's period while calls are pending


class _Expired(Exception):
    """A call's timer ran out (``Mux.execute`` turns it into ``Timeout``)."""


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class Mux:
    """One client's shared socket and its requests in flight (one event loop)."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.sock: zmq.asyncio.Socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rid = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.outbox: list[tuple[int, list[Any]]] = []
        self.flushing = False
        self.unsent: list[tuple[asyncio.Future[Any], list[int]]] = []   # (send future, ids)
        self.reader: asyncio.Task[None] | None = None
        self.stale = False
        self.frames = 0          # frames sent: one per flush unless split (tests read it)
        self.asking = 0          # the id of our ROUTERS request in flight (``transport.Pool``)
        self.joined = False      # the socket is connected to the other routers
        self.mon: zmq.asyncio.Socket | None = None   # with other routers: their disconnections
        self.watcher: asyncio.Task[None] | None = None
        self.resendable: set[int] = set()   # ids whose callers may send them again
        self.deadlines: deque[tuple[float, int]] = deque()   # (loop time, id), call order
        self.sweeper: asyncio.TimerHandle | None = None

    def socket(self) -> zmq.asyncio.Socket:
        loop = asyncio.get_running_loop()
        if self.sock is not None and self.loop is not loop:
            self.reset()   # a socket of a loop that is gone (or another one)
        if self.sock is None:
            self.sock, self.loop = open_socket(zmq.asyncio.Context.instance(), self.owner), loop
            self.joined = False
        if not self.joined and self.owner._pool.others is not None:
            self.joined = True
            if self.owner._pool.others:
                join_pool(self.sock, self.owner._pool)
                self.mon = cast("zmq.asyncio.Socket",
                                self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED))
        return self.sock

    def reset(self) -> None:
        """Close the socket, failing whatever is still pending or unsent."""
        if self.reader is not None and not self.reader.get_loop().is_closed():
            self.reader.cancel()
        self.reader = None
        for fut in self.pending.values():   # (none left of a loop that has ended)
            if not fut.done() and not fut.get_loop().is_closed():
                fut.set_exception(errors.ConnectionFailed("the client was closed"))
        self.pending.clear()
        self.outbox.clear()
        self.unsent.clear()
        self._unwatch()
        if self.mon is not None:
            if self.sock is not None:
                try:
                    self.sock.disable_monitor()
                except zmq.ZMQError:
                    pass
            self.mon.close(linger=0)
            self.mon = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
            self.owner._pool.forget()
        self.stale = False
        self.asking = 0
        self.resendable.clear()
        self._stop_sweeping()

    def _stop_sweeping(self) -> None:
        if self.sweeper is not None and not (self.loop is not None and self.loop.is_closed()):
            self.sweeper.cancel()
        self.sweeper = None
        self.deadlines.clear()

    def _sweep(self) -> None:
        """Fail the calls past their deadline; come back while any is pending."""
        self.sweeper = None
        pending, deadlines = self.pending, self.deadlines
        if not pending:
            deadlines.clear()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        while deadlines:
            at, rid = deadlines[0]
            fut = pending.get(rid)
            if fut is None or fut.done():
                deadlines.popleft()        # answered (or gone) in time
            elif at <= now:
                deadlines.popleft()
                fut.set_exception(_Expired())
            else:
                break
        self.sweeper = loop.call_at(min(deadlines[0][0], now + SWEEP_S) if deadlines
                                    else now + SWEEP_S, self._sweep)

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
        if self.reader is None or self.reader.done():
            self.reader = loop.create_task(self._read(sock))
        if self.mon is not None and (self.watcher is None or self.watcher.done()):
            self.watcher = loop.create_task(self._watch(self.mon))
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
        if self.sock is None:
            return
        self.frames += 1
        sent = cast("asyncio.Future[Any]", self.sock.send(frame))
        if not sent.done():   # no connection yet (IMMEDIATE): queued until there is one
            entry = (sent, [rid for rid, _ in chunk])
            self.unsent.append(entry)

            def gone(_: object) -> None:
                if entry in self.unsent:
                    self.unsent.remove(entry)
            sent.add_done_callback(gone)

    def _withdraw_unsent(self, endpoint: str) -> None:
        """Cancel every frame still waiting for a connection and fail its
        requests with ``ConnectionFailed``."""
        unsent, self.unsent = self.unsent, []
        exc = errors.ConnectionFailed("cannot reach %s%s" % (
            endpoint, " (or the CURVE handshake failed: check the keys)"
            if self.owner._curve else ""))
        for sent, rids in unsent:
            sent.cancel()
            for rid in rids:
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)

    # -- receiving ------------------------------------------------------------------
    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        pending = self.pending
        while pending:
            try:
                frame = await sock.recv()
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

    async def _watch(self, mon: zmq.asyncio.Socket) -> None:
        """While requests are pending: when a router connection drops, fail
        those whose callers may resend them with ``RouterLost`` (a
        ``Timeout``: ``retry`` resends them to the routers that are up)."""
        while True:                      # what dropped while nothing was pending is old news
            try:
                await mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        while self.pending:
            frames = await mon.recv_multipart()
            if int.from_bytes(frames[0][:2], "little") != zmq.EVENT_DISCONNECTED:
                continue
            lost = RouterLost("a router went away with the request in flight")
            for rid in list(self.resendable):
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(lost)
            self.resendable.clear()

    def _unwatch(self) -> None:
        if self.watcher is not None and not self.watcher.get_loop().is_closed():
            self.watcher.cancel()
        self.watcher = None

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
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
        self.reader = None
        if self.watcher is not asyncio.current_task():
            self._unwatch()
        if self.stale and not self.outbox:
            self.reset()   # nobody else is using it: drop whatever it still queued

    # -- one request ----------------------------------------------------------------
    async def execute(self, commands: list[Any], timeout: float,
                      resend: bool = False) -> list[Any]:
        """Send ``commands`` as one request (coalesced with this turn's others)
        and return their raw results; ``Timeout`` after ``timeout`` seconds,
        ``ConnectionFailed`` if it could not even be sent by then. With
        ``resend`` (the caller may send it again): ``RouterLost`` as soon as a
        router of the pool goes away while it waits."""
        loop = asyncio.get_running_loop()
        rid, fut = self.submit(commands, loop)
        if resend:
            self.resendable.add(rid)
        at = loop.time() + timeout
        deadlines = self.deadlines
        timer = None
        if deadlines and at < deadlines[-1][0]:   # sooner than a call before it: a timer of its own
            timer = loop.call_at(at, _expire, fut)
        else:
            deadlines.append((at, rid))
            if self.sweeper is None:
                self.sweeper = loop.call_at(min(at, loop.time() + SWEEP_S), self._sweep)
        try:
            results = await fut
        except _Expired:
            self.stale = True
            if any(rid in rids for _, rids in self.unsent):
                self._withdraw_unsent(self.owner.endpoint)
                raise errors.ConnectionFailed("cannot reach %s" % self.owner.endpoint) from None
            raise errors.Timeout("no reply from %s within %.1fs"
                                 % (self.owner.endpoint, timeout)) from None
        finally:
            if timer is not None:
                timer.cancel()
            self.resendable.discard(rid)
            self.forget(rid)
        if type(results) is ErrorReply:
            return [results] * len(commands)
        return results  # type: ignore[no-any-return]
