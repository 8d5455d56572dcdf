"""Catalogue 27: at the open-file limit the router keeps serving.

Every client connection costs the router one file descriptor. The
supervisor raises the soft RLIMIT_NOFILE to the hard limit; the router
admits at most min(--max-clients, limit - shards - 64) connections and
answers requests on the others with Overloaded, then closes them; clients
admitted before are served throughout.
"""
from __future__ import annotations

import resource
import time

import pytest
import zmq

from flin import errors, protocol
from tests.support.cluster import make_cluster


def _flood(endpoint: str, n: int, wait_s: float = 20.0) -> tuple[int, list[str], int]:
    """``n`` connections at once, one PING each: (pongs, refusal messages, silent)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 4 * n):       # ours: two descriptors a socket
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * n), hard))
    ctx = zmq.Context(2)
    ctx.set(zmq.MAX_SOCKETS, n + 64)
    socks = []
    try:
        for _ in range(n):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            socks.append(s)
        for i, s in enumerate(socks):
            s.send(protocol.encode_requests([(i + 1, [[protocol.PING]])]))
        pongs, refusals = 0, []
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        pending = set(socks)
        deadline = time.monotonic() + wait_s
        while pending and time.monotonic() < deadline:
            for s, _ in poller.poll(200):
                (_, result), = protocol.decode_replies(s.recv())
                if type(result) is list:
                    pongs += 1
                else:
                    assert result.code == errors.Overloaded.code, result
                    refusals.append(result.message)
                pending.discard(s)
                poller.unregister(s)
        return pongs, refusals, len(pending)
    finally:
        for s in socks:
            s.close()
        ctx.term()


def test_a_low_soft_limit_is_raised_and_every_client_served(tmp_short):
    """A soft limit of 1024 (a common default) with a higher hard limit:
    1,500 clients at once are all answered, and STATS says the limit."""
    c = make_cluster(tmp_short, 8)
    c.endpoint = "tcp://127.0.0.1:%d" % _free_port()
    c.nofile = (1024, 4096)
    c.start()
    try:
        pongs, refusals, silent = _flood(c.endpoint, 1500)
        assert (pongs, len(refusals), silent) == (1500, 0, 0)
        with c.client() as cl:
            clients = cl.stats()["router"]["clients"]
        assert clients["limit"] == 4096 - 8 - 64, clients
    finally:
        assert c.stop() == 0


def test_clients_past_the_limit_are_refused_and_the_admitted_served(tmp_short):
    """--max-clients 100: one client connected first, then 200 more at once.
    Those past the limit get Overloaded saying why, never silence; the first
    client is served meanwhile and after; once the flood leaves, new clients
    are admitted again; one warning in the log."""
    c = make_cluster(tmp_short, 4, extra=["--max-clients", "100"])
    c.endpoint = "tcp://127.0.0.1:%d" % _free_port()
    c.start()
    try:
        with c.client(timeout=5.0) as first:
            first.set(b"first", b"1")
            pongs, refusals, silent = _flood(c.endpoint, 200)
            assert silent == 0 and pongs + len(refusals) == 200
            assert 90 <= pongs <= 99 and len(refusals) >= 101, (pongs, len(refusals))
            assert all("limit of 100 client connections" in m for m in refusals), refusals[:3]
            assert first.get(b"first") == b"1"
            stats = first.stats()["router"]["clients"]
            assert stats["refused"] >= 101 and stats["limit"] == 100, stats
        time.sleep(0.5)
        with c.client(timeout=5.0) as later:               # the refused are gone again
            assert later.get(b"first") == b"1"
        assert c.log().count("refusing new ones") == 1
    finally:
        assert c.stop() == 0


@pytest.mark.parametrize("n", [1500])
def test_a_hard_limit_reached_does_not_take_down_admitted_clients(tmp_short, n):
    """A hard limit of 1024: the flood cannot all get in, but the client
    admitted before it keeps being served, promptly, while it lasts."""
    import threading
    c = make_cluster(tmp_short, 4)
    c.endpoint = "tcp://127.0.0.1:%d" % _free_port()
    c.nofile = (1024, 1024)
    c.start()
    try:
        with c.client(timeout=5.0) as first:
            first.set(b"k", b"v")
            result: dict = {}
            flood = threading.Thread(target=lambda: result.update(r=_flood(c.endpoint, n, 10)))
            flood.start()
            slowest = 0.0
            while flood.is_alive():
                t0 = time.monotonic()
                assert first.get(b"k") == b"v"
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.05)
            flood.join()
            pongs, refusals, silent = result["r"]
            assert pongs >= 1024 - 4 - 64 - 10, result["r"]
            assert slowest < 2.0, slowest
    finally:
        assert c.stop() == 0


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
