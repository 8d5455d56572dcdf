"""The micro-benchmarks behind the router's loop choices (ARCHITECTURE,
"Performance"): one process, no cluster, a figure per line.

    python -m flin_perf.microbench

- ``zmq_poll`` over 65 descriptors (a ROUTER socket and 64 Unix sockets,
  the router's front and 64 worker links) against a poll of the ROUTER
  socket and one ``epoll`` descriptor holding the 64;
- the end of a drain: a ``recv`` raising ``zmq.Again`` against asking
  ``EVENTS``.
"""
from __future__ import annotations

import select
import socket
import time
from typing import Callable

import zmq


def per_call_us(fn: Callable[[], object], n: int = 20_000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    front.bind("inproc://microbench")
    pairs = [socket.socketpair() for _ in range(64)]
    pairs[5][1].send(b"x")                   # one link readable, as under load
    wide = zmq.Poller()
    wide.register(front, zmq.POLLIN)
    for a, _ in pairs:
        wide.register(a.fileno(), zmq.POLLIN)
    ep = select.epoll()
    for a, _ in pairs:
        ep.register(a.fileno(), select.EPOLLIN)
    narrow = zmq.Poller()
    narrow.register(front, zmq.POLLIN)
    narrow.register(ep.fileno(), zmq.POLLIN)

    def epoll_way() -> None:
        if ep.fileno() in dict(narrow.poll(0)):
            ep.poll(0)
    print("zmq_poll over 65 fds: %.2f us" % per_call_us(lambda: dict(wide.poll(0))))
    print("zmq_poll over 2 fds + epoll: %.2f us" % per_call_us(epoll_way))

    def again() -> None:
        try:
            front.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            pass
    print("recv raising zmq.Again: %.2f us" % per_call_us(again, 100_000))
    print("getsockopt(EVENTS): %.2f us" % per_call_us(lambda: front.get(zmq.EVENTS), 100_000))
    for a, b in pairs:
        a.close()
        b.close()
    ep.close()
    front.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
