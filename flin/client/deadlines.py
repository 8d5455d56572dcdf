"""The asyncio client's deadlines: ONE timer per client fails the calls past
their deadline, instead of a timer per call (which cost ~15 % of the
client's CPU per SET, ``perf/aio_set.py``).

A call's ``(loop time, id)`` goes into a FIFO in call order, which with one
client timeout is deadline order; the sweep runs every ``SWEEP_S`` while
calls are pending and fails, with ``Expired``, those past their deadline. A
call whose deadline comes before the last one's (a shorter timeout) gets a
timer of its own. Used by ``mux.Mux``; imports nothing of Flin's.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

SWEEP_S = 0.1            # the sweep's period while calls are pending


class Expired(Exception):
    """A call's deadline passed (``Mux`` turns it into ``Timeout``)."""


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_exception(Expired())


class Deadlines:
    """The deadlines of one client's calls in flight (``pending``: id -> future)."""

    def __init__(self, pending: dict[int, "asyncio.Future[Any]"]) -> None:
        self.pending = pending
        self.queue: deque[tuple[float, int]] = deque()   # (loop time, id), call order
        self.sweeper: asyncio.TimerHandle | None = None

    def add(self, loop: asyncio.AbstractEventLoop, at: float, rid: int,
            fut: "asyncio.Future[Any]") -> asyncio.TimerHandle | None:
        """Fail ``fut`` with ``Expired`` at loop time ``at``; a timer of its
        own (to cancel when the call ends) if it comes before the last one."""
        queue = self.queue
        if queue and at < queue[-1][0]:
            return loop.call_at(at, _expire, fut)
        queue.append((at, rid))
        if self.sweeper is None:
            self.sweeper = loop.call_at(min(at, loop.time() + SWEEP_S), self._sweep)
        return None

    def clear(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Forget every deadline (the socket is gone); ``loop``: the sweep's, if still open."""
        if self.sweeper is not None and loop is not None and not loop.is_closed():
            self.sweeper.cancel()
        self.sweeper = None
        self.queue.clear()

    def _sweep(self) -> None:
        """Fail the calls past their deadline; come back while any is pending."""
        self.sweeper = None
        pending, queue = self.pending, self.queue
        if not pending:
            queue.clear()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        while queue:
            at, rid = queue[0]
            fut = pending.get(rid)
            if fut is None or fut.done():
                queue.popleft()        # answered (or gone) in time
            elif at <= now:
                queue.popleft()
                fut.set_exception(Expired())
            else:
                break
        self.sweeper = loop.call_at(min(queue[0][0], now + SWEEP_S) if queue
                                    else now + SWEEP_S, self._sweep)
