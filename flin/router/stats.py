"""The router's own figures: counters, per-kind latency histograms, queues.

The router keeps, per request, one ``time.monotonic()`` at arrival and one at
reply, and adds the difference to the ``figures.Histogram`` of its kind.
Shards count their own ops (``flin.shardworker.admin``); STATS joins both.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from .. import errors
from ..figures import Histogram
from ..protocol import OP_NAMES

PIPELINE = -1              # the "kind" of a request holding several commands


def request_kind(cmds: list) -> int:
    """The latency histogram of a request: its command's opcode, or PIPELINE."""
    if len(cmds) == 1:
        c = cmds[0]
        if type(c) is list and c and type(c[0]) is int and c[0] in OP_NAMES:
            return c[0]
    return PIPELINE


class RouterStats:
    """What the router counts; its hot path touches ``inflight``, ``errors``
    and ``latency`` directly."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.inflight = 0                       # requests received, not yet answered
        self.errors: dict[int, int] = {}        # error code -> errors answered
        self.latency: dict[int, Histogram] = {}

    def histogram(self, op: int) -> Histogram:
        h = self.latency.get(op)
        if h is None:
            h = self.latency[op] = Histogram()
        return h


def _code_name(code: int) -> str:
    return type(errors.error_for_code(code, "")).__name__


def router_snapshot(router: Any) -> dict:
    """The router's figures, for STATS (reads the router's state, changes nothing)."""
    st: RouterStats = router.stats
    queues = []
    for s in range(router.slots):
        batches = router.inflight[s]
        queues.append({"queued": len(router.out_ops[s]), "batches": len(batches),
                       "in_flight": sum(len(sinks) - done for sinks, done, *_ in batches.values()),
                       "queued_bytes": router.out_bytes[s], "state": router.state[s]})
    latency = {("pipeline" if op == PIPELINE else OP_NAMES.get(op, str(op))): h.summary()
               for op, h in st.latency.items()}
    return {"pid": os.getpid(), "id": router.cfg.router_id, "endpoint": router.cfg.endpoint,
            "uptime_s": time.monotonic() - st.started,
            "requests": router.counts["requests"], "in_flight": st.inflight,
            "dropped_replies": router.counts["dropped_replies"],
            "clients": router.clients.snapshot(),
            "refused_replies": router.counts["refused_replies"],
            "waited_frames": router.counts["waited_frames"],
            "bytes": {"queued_for_shards": router.queued_bytes, "held_results": router.held,
                      "replies_waiting": router.out.total},
            "errors": {_code_name(c): n for c, n in st.errors.items()},
            "queues": queues, "latency": latency, "ring": router.ring.params(),
            "epoch": router.epoch, "shards": router.ring.shards,
            "reshard": RouterView(router).supervisor_state().get("reshard"),
            "read_cache": None if router.cache is None else router.cache.stats(),
            "resp": None if router.resp is None else router.resp.stats()}


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            got = json.load(f)
    except (OSError, ValueError):
        return {}
    return got if type(got) is dict else {}


class RouterView:
    """What STATUS and STATS report besides the shards' answers (the
    ``view.ClusterView``), read from the router and the supervisor's file."""

    def __init__(self, router: Any) -> None:
        self.router = router

    def supervisor_state(self) -> dict:
        state = _read_json(self.router.cfg.children_path)
        progress = _read_json(self.router.cfg.reshard_path)   # a reshard's, while it runs
        if progress.get("state") not in (None, "asked", "done", "failed", "refused"):
            state["reshard"] = progress
        return state

    def router_stats(self) -> dict:
        return router_snapshot(self.router)

    def me(self) -> int:
        return self.router.cfg.router_id  # type: ignore[no-any-return]

    def endpoints(self) -> list[str]:
        view = self.router.node_view
        if view is not None and view.get("routers"):   # every live node's, ours first
            return list(view.get("routers"))
        return self.router.cfg.endpoints()  # type: ignore[no-any-return]

    def cluster(self) -> dict | None:
        view = self.router.node_view
        if view is None:
            return None
        d = view.data
        return {"name": self.router.cfg.cluster, "node": d.get("me"), "epoch": d.get("epoch"),
                "nodes": {n: {"alive": v.get("alive"), "routers": v.get("routers")}
                          for n, v in (d.get("nodes") or {}).items()},
                "placement": d.get("placement"), "move": d.get("move"), "etcd": d.get("etcd")}

    def alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def cache_stats(self, shard: int) -> dict | None:
        cache = self.router.cache
        return None if cache is None else cache.shard_stats(shard)  # type: ignore[no-any-return]

    def uptime(self) -> float:
        return time.monotonic() - self.router.stats.started  # type: ignore[no-any-return]

    def epoch(self) -> int:
        return self.router.epoch  # type: ignore[no-any-return]

    def resp(self) -> str | None:
        return self.router.cfg.resp  # type: ignore[no-any-return]
