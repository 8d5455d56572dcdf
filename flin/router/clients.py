"""How many client connections the router admits, and how it refuses the rest.

Every client connection costs the router one file descriptor. At the
open-file limit libzmq's accept fails with EMFILE and, the connection still
waiting in the backlog, is retried at once forever: the I/O thread spins,
logs nothing, and new and old clients starve. So, as Redis does for
``maxclients``, the router admits at most

    limit = min(--max-clients, RLIMIT_NOFILE - shards - RESERVE)

connections (the supervisor raises the soft RLIMIT_NOFILE to the hard limit
first), and keeps the rest of its descriptors for itself.

A socket monitor reports each connection accepted or closed, with its
descriptor. One accepted past the limit is refused: a request that arrives
on it (``zmq.SRCFD`` of its frame) is answered ``Overloaded`` saying why, and
a tick later (or after ``_GRACE_S`` if it sends nothing) the router shuts the
connection down (``shutdown(2)`` on a
duplicate of the descriptor; libzmq then closes it), so refused clients hold
no descriptor for long. Clients admitted before are served as usual. A
warning is logged once a minute while connections are refused.

With a hard open-file limit too low for the clients that come, libzmq can
still reach EMFILE with refused connections in hand; its I/O thread then
spins until one closes, but the connections admitted keep being served.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..zmqflags import NOBLOCK

log = logging.getLogger("flin.router")

RESERVE = 64             # descriptors kept for the router itself besides one per shard link
_GRACE_S = 1.0           # a refused connection that sends nothing is shut down after this
_AFTER_REPLY_S = 0.1     # one that sent a request, this long after its refusal was queued
_WARN_EVERY_S = 60.0
# not EVENT_ACCEPT_FAILED: at EMFILE libzmq retries the accept in a tight
# loop and would flood the monitor (and this process) with one event a try
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


def client_limit(requested: int, shards: int) -> tuple[int, int | None]:
    """The connections a router may admit, and the soft open-file limit
    that set it (None if ``requested`` is within it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or requested <= soft - shards - RESERVE:
        return requested, None
    return max(1, soft - shards - RESERVE), soft


class ClientLimit:
    """Counts the front socket's connections and refuses those past the limit."""

    def __init__(self, front: zmq.Socket, endpoint: str, requested: int, shards: int) -> None:
        self.limit, fd_cap = client_limit(requested, shards)
        self.local = _local_name(endpoint)
        if fd_cap is not None:
            log.warning("the open-file limit (%d) allows %d client connections, not the %d "
                        "of --max-clients; raise the hard limit (ulimit -Hn, LimitNOFILE=) "
                        "for more", fd_cap, self.limit, requested)
        # libzmq's monitor sends block its I/O thread at the pipe's high-water
        # mark (1,000 events by default): a burst of connections while this
        # loop is busy would freeze every client. No limit on our end.
        addr = "inproc://flin-clients-%d" % id(self)
        front.monitor(addr, _EVENTS)
        self.monitor = front.context.socket(zmq.PAIR)
        self.monitor.setsockopt(zmq.RCVHWM, 0)
        self.monitor.connect(addr)
        self.connected = 0
        # descriptor -> (when to shut it down, who is on it: checked again then)
        self.refused: dict[int, tuple[float, object]] = {}
        self.refusals = 0                      # connections refused since start
        self._warned = -_WARN_EVERY_S

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.monitor, zmq.POLLIN)

    def on_events(self) -> None:
        """Take every connection event the monitor has queued."""
        while True:
            try:
                msg = parse_monitor_message(self.monitor.recv_multipart(NOBLOCK))
            except zmq.Again:
                return
            event, fd = msg["event"], int(msg["value"])
            if event == zmq.EVENT_ACCEPTED:
                self.connected += 1
                if self.connected > self.limit:
                    self.refused[fd] = (time.monotonic() + _GRACE_S, _peer(fd, self.local))
                    self.refusals += 1
                    self._warn("%d client connections, the limit is %d: refusing new ones "
                               "with Overloaded (see README, Limits)" % (self.connected, self.limit))
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = max(0, self.connected - 1)
                self.refused.pop(fd, None)

    def near(self) -> bool:
        """Could the next connection be one too many? Then each request is
        checked on its own (``catch_up``, ``refuses``); below, none is."""
        return self.connected + RESERVE >= self.limit or bool(self.refused)

    def catch_up(self) -> None:
        """Take the connection events queued so far (a request is delivered
        only after its connection's ACCEPTED event was queued)."""
        if int(self.monitor.get(zmq.EVENTS)) & zmq.POLLIN:
            self.on_events()

    def refuses(self, frame: zmq.Frame) -> bool:
        """Did ``frame`` come on a refused connection? If so, that connection
        is shut down once the refusal has had time to go out."""
        fd = frame.get(zmq.SRCFD)
        if fd not in self.refused:
            return False
        when, who = self.refused[fd]
        self.refused[fd] = (min(when, time.monotonic() + _AFTER_REPLY_S), who)
        return True

    def why(self) -> str:
        return ("the router serves its limit of %d client connections; retry later, or "
                "raise --max-clients or the open-file limit" % self.limit)

    def tick(self, now: float) -> None:
        """Shut down the refused connections whose grace has passed."""
        if not self.refused:
            return
        self.on_events()    # a descriptor closed meanwhile must not be touched
        for fd, (when, who) in list(self.refused.items()):
            if now >= when:
                del self.refused[fd]
                _shutdown(fd, self.local, who)

    def snapshot(self) -> dict:
        return {"connected": self.connected, "limit": self.limit, "refused": self.refusals}

    def close(self) -> None:
        self.monitor.close(linger=0)

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_S:
            self._warned = now
            log.warning("router: %s", what)


def _local_name(endpoint: str) -> object:
    """What getsockname() says on a connection accepted at ``endpoint``."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        return rest
    return int(rest.rsplit(":", 1)[1]) if rest.rsplit(":", 1)[-1].isdigit() else None


def _peer(fd: int, local: object) -> object:
    """Who is on the client connection ``fd``: its peer's address (tcp) or
    credentials (ipc); None if ``fd`` is not a connection of the client
    endpoint. A descriptor number can be reused once libzmq closes it."""
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        name = dup.getsockname()
        if isinstance(local, str):
            if name != local:
                return None
            return dup.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if type(name) is not tuple or name[1] != local:
            return None
        return dup.getpeername()
    except OSError:
        return None
    finally:
        dup.close()


def _shutdown(fd: int, local: object, who: object) -> None:
    """End a refused client connection that libzmq owns, without closing its
    descriptor under it: shut the socket down through a duplicate; libzmq
    sees the end of the stream and closes its own. Only if the descriptor
    still holds the connection refused (the same peer)."""
    if who is None or _peer(fd, local) != who:
        return
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()
