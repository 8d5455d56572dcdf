"""The routers a client spreads over, and noticing one go away.

A host may run several routers (``flin start --routers``); a client is
given one endpoint and learns the others (``Pool``). ``Watch`` tells a
waiting call that a router connection dropped, so that a call in flight
there is resent at once where that is safe (``transport.Conn.collect``).
"""
from __future__ import annotations

from typing import Any

import zmq

from .. import errors
from ..zmqflags import NOBLOCK


class Pool:
    """The routers a client learned of from the endpoint it was given (one
    object shared by all of a client's sockets).

    A host may run several routers (``flin start --routers``). A socket's
    first frame carries, besides the caller's request, a ``ROUTERS`` request
    (answered by the router itself: no extra round trip, no extra wait);
    once its answer comes, every socket of the client connects to the other
    routers too, and ZeroMQ's DEALER spreads requests round-robin over the
    connected ones (with ``IMMEDIATE``, only over routers that are up: a
    router that dies drops out at once, and is used again once it is back).
    A TCP router's address is taken with the host this client was given and
    the router's own port (a router bound on ``0.0.0.0`` is reached as the
    first one was). ``discover=False`` keeps a client on its one endpoint.
    """

    def __init__(self, endpoint: str, discover: bool) -> None:
        self.endpoint, self.discover = endpoint, discover
        self.others: list[str] | None = None if discover else []   # None: not learned yet

    def wanted(self) -> bool:
        return self.others is None

    def learn(self, results: Any) -> None:
        """Take a ``ROUTERS`` answer (a router that does not know the op
        answers an error: it is alone)."""
        found = results[0] if type(results) is list and results else None
        if type(found) is not list:
            self.others = []
            return
        mine = _mapped(self.endpoint, self.endpoint)
        others = []
        for ep in found:
            if type(ep) is str and ep.partition("://")[0] in ("tcp", "ipc"):
                ep = _mapped(self.endpoint, ep)
                if ep != mine and ep not in others:
                    others.append(ep)
        self.others = others

    def forget(self) -> None:
        """Learn again with the next frame (after a timeout: the pool may have changed)."""
        if self.discover:
            self.others = None


def _mapped(given: str, endpoint: str) -> str:
    """``endpoint`` as this client reaches it: TCP with the given host."""
    if given.startswith("tcp://") and endpoint.startswith("tcp://"):
        host = given[len("tcp://"):].rpartition(":")[0]
        port = endpoint.rpartition(":")[2]
        return "tcp://%s:%s" % (host, port)
    return endpoint


def join_pool(sock: "zmq.Socket[Any]", pool: Pool) -> None:
    """Connect ``sock`` to the other routers ``pool`` knows of (one that
    ZeroMQ cannot use is skipped: the given endpoint still works)."""
    for endpoint in pool.others or ():
        try:
            sock.connect(endpoint)
        except zmq.ZMQError:
            pass


class RouterLost(errors.Timeout):
    """A router of the pool went away while a request was in flight: its
    reply may never come (a ``Timeout``: the retry rules of an unknown
    outcome apply, and a resend goes to the routers that are up)."""


class Watch:
    """The disconnections of one socket's routers (a ZeroMQ socket monitor)."""

    def __init__(self, sock: "zmq.Socket[Any]") -> None:
        self.sock = sock
        self.mon = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def lost(self) -> bool:
        """Did a router connection drop since the last call?"""
        dropped = False
        mon = self.mon
        # asked before every send: EVENTS (~1.3 us) instead of a recv raising Again (~4 us)
        while mon.get(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[operator,arg-type]
            # [uint16 event, uint32 value][endpoint] (zmq.utils.monitor would import zmq.asyncio)
            frames = mon.recv_multipart(NOBLOCK)
            event = int.from_bytes(frames[0][:2], "little")
            dropped = dropped or event == zmq.EVENT_DISCONNECTED
        return dropped

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.mon.close(linger=0)
