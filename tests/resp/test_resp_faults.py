"""Faults seen through the Redis protocol: Flin's typed errors arrive as the
documented RESP prefixes (README's error table), other shards keep serving,
and writes acknowledged over RESP survive a router's SIGKILL."""
from __future__ import annotations

import os
import signal
import threading
import time

import redis

from tests.support import faults as faultlib
from tests.support.resp import Raw, resp_cluster


def test_a_stopped_shard_is_uncertain_then_tryagain(tmp_short):
    c, port = resp_cluster(tmp_short, shards=4, extra=["--shard-timeout", "0.5"])
    mine = faultlib.keys_on(0, 4, 1)[0]
    other = faultlib.keys_on(3, 4, 1)[0]
    pid = faultlib.wait_worker(c, 0)
    try:
        with Raw(port) as r:
            assert r.call("SET", mine, "m") == ("+", b"OK")
            assert r.call("SET", other, "o") == ("+", b"OK")
            os.kill(pid, signal.SIGSTOP)
            t0 = time.monotonic()
            kind, text = r.call("SET", mine, "x")       # in flight when the shard stalls
            assert kind == "-" and text.startswith(b"UNCERTAIN "), text
            assert time.monotonic() - t0 < 2.5
            kind, text = r.call("GET", mine)             # the shard is known stalled now
            assert kind == "-" and text.startswith(b"TRYAGAIN shard 0 is"), text
            assert r.call("GET", other) == ("$", b"o")
            with redis.Redis(port=port, socket_timeout=5) as rp:
                try:
                    rp.get(mine)
                    raise AssertionError("a stalled shard answered")
                except redis.exceptions.TryAgainError:
                    pass
            os.kill(pid, signal.SIGCONT)
            faultlib.wait_for(lambda: r.call("GET", mine)[1] in (b"m", b"x"), 10,
                              "the shard to serve after SIGCONT")
    finally:
        os.kill(pid, signal.SIGCONT)
        assert c.stop() == 0


def test_writes_acknowledged_over_resp_survive_a_router_kill(tmp_short):
    c, port = resp_cluster(tmp_short, shards=4)
    acked: list[list[bytes]] = [[] for _ in range(4)]
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=1) as r:
                    while not stop.is_set():
                        key = b"w%d:%d" % (n, i)
                        i += 1
                        if r.set(key, key):
                            acked[n].append(key)
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.05)            # the router is gone: the supervisor restarts it

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        os.kill(faultlib.router_pid(c), signal.SIGKILL)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
        keys = [k for ks in acked for k in ks]
        assert len(keys) > 1000
        with redis.Redis(port=port, socket_timeout=30) as r:
            got = []
            for i in range(0, len(keys), 5000):
                got += r.mget(keys[i:i + 5000])
        lost = [k for k, v in zip(keys, got) if v != k]
        assert not lost, "%d of %d acknowledged writes lost" % (len(lost), len(keys))
        print("\n[resp] router SIGKILLed: %d acknowledged SETs, 0 lost" % len(keys))
    finally:
        stop.set()
        assert c.stop() == 0
