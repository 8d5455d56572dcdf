"""A router that goes away while workers connect is not a worker crash: the
worker's hello can meet a closed socket (BrokenPipeError), and the worker
must treat that as "the router went away, retry", not die with a traceback.

The real cluster's router is SIGKILLed with its supervisor held (SIGSTOP),
and a listener on the router's Unix socket (the link path in DATA/run)
accepts each worker's connection and closes it at once, over and over: the
real worker processes race their hello against the close thousands of
times, as they would against routers dying in a row (a supervisor restarts
a router only after a backoff, so the real thing races a handful of times a
minute). Then the supervisor runs again, restarts the router, and every
worker must be the same process, serving, with no traceback in the log."""
from __future__ import annotations

import os
import signal
import socket
import time

from flin.supervisor.processes import alive

CONNECTIONS = 4000


def _full_log(cluster) -> str:
    with open(cluster.log_path, errors="replace") as f:
        return f.read()


def _close_every_connection(path: str, seconds: float) -> int:
    """Listen on ``path``; accept and close each connection at once."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(0.5)
    n, deadline = 0, time.monotonic() + seconds
    try:
        while n < CONNECTIONS and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            conn.close()
            n += 1
    finally:
        listener.close()
        os.unlink(path)
    return n


def test_workers_survive_a_router_that_closes_during_their_hello(cluster):
    with cluster.client() as c:
        st = c.status()
    workers = {s["id"]: s["pid"] for s in st["shards"]}
    router, sup = st["router"]["pid"], cluster.proc.pid
    link = os.path.join(cluster.data, "run", "shards.link")
    os.kill(sup, signal.SIGSTOP)
    try:
        os.kill(router, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(router) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.unlink(link)                              # the dead router's socket file
        accepted = _close_every_connection(link, 8.0)
    finally:
        os.kill(sup, signal.SIGCONT)
    assert accepted > 100, accepted                  # the workers kept reconnecting
    deadline = time.monotonic() + 30
    while True:
        try:
            with cluster.client(timeout=2) as c:
                st = c.status()
            if st["router"]["pid"] != router and all(s["alive"] for s in st["shards"]):
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "the cluster did not come back"
        time.sleep(0.2)
    log = _full_log(cluster)
    for bad in ("BrokenPipeError", "ConnectionResetError", "Traceback", "crashed"):
        assert bad not in log, [x for x in log.splitlines() if bad in x][:3]
    assert {s["id"]: s["pid"] for s in st["shards"]} == workers   # none died
    with cluster.client() as c:
        c.mset({b"after:%d" % i: b"v" for i in range(200)})
        assert c.mget([b"after:%d" % i for i in range(200)]) == [b"v"] * 200
