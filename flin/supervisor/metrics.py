"""The Prometheus exporter: one more supervised process, started with ``--metrics-port``.

It serves ``http://127.0.0.1:PORT/metrics`` (the ``prometheus_client``
library, ``pip install 'flin[metrics]'``); each scrape asks every router for
``STATS`` through a ``flin.Client`` of its own endpoint and turns the answers
into metric families (a custom collector: nothing is cached, a scrape shows
the cluster as it is). Names follow Prometheus conventions: ``_total``
counters, base units (seconds, bytes), one label per dimension; ``router``
is a router's id in the pool (``--routers``), the shards' figures come from
the first router that answers::

    flin_up                                        1 if a router answered
    flin_router_up{router}                         1 if that router answered
    flin_router_requests_total{router}             request messages received
    flin_router_errors_total{code,router}          errors answered, by error class
    flin_router_requests_in_flight{router}
    flin_router_uptime_seconds{router}
    flin_shard_queue_depth{shard,router}           ops queued + in flight to the shard
    flin_request_duration_seconds{op,router}       histogram, router-side latency
    flin_requests_total{op,shard}                  ops applied by each shard
    flin_shard_errors_total{code,shard}
    flin_shard_up{shard}
    flin_shard_keys{shard}                         an estimate past 10,000 keys
    flin_shard_disk_bytes{shard}
    flin_shard_read_cache_hits_total{shard}, ..._misses_total{shard}
    flin_shard_compaction_running{shard}, flin_shard_compactions_total{shard}
    flin_shard_snapshots_open{shard}
    flin_shard_hot{shard}                          1 if its load is far above the mean
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Iterator

import zmq

from .. import errors, figures
from ..client import Client
from ..config import Config

log = logging.getLogger("flin.metrics")

# histogram bucket bounds: powers of two of microseconds, 16 us .. ~16.8 s
_BOUNDS = [(2 ** k, 8 + (k - 3) * 4) for k in range(4, 25)]   # (us, first bucket index above)


class FlinCollector:
    """A prometheus_client collector that asks the cluster at every scrape."""

    def __init__(self, endpoints: list[str], timeout: float = 5.0) -> None:
        self.clients = [Client(ep, timeout=timeout, retries=0, discover=False)
                        for ep in endpoints]
        self.lock = threading.Lock()      # scrapes may come on several threads

    def fetch(self, router: int = 0) -> dict | None:
        with self.lock:
            try:
                return self.clients[router].stats()
            except (errors.FlinError, zmq.ZMQError) as exc:
                log.warning("scrape: no stats from router %d: %s", router, exc)
                return None

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
        )
        answers = [self.fetch(i) for i in range(len(self.clients))]
        st = next((a for a in answers if a), None)
        up = GaugeMetricFamily("flin_up", "1 if a router answered the scrape")
        up.add_metric([], 1 if st else 0)
        yield up
        routers_up = GaugeMetricFamily("flin_router_up", "1 if the router answered the scrape",
                                       labels=["router"])
        for i, a in enumerate(answers):
            routers_up.add_metric([str(i)], 1 if a else 0)
        yield routers_up
        if not st:
            return
        reqs = CounterMetricFamily("flin_router_requests", "Request messages received",
                                   labels=["router"])
        errs = CounterMetricFamily("flin_router_errors", "Errors answered to clients",
                                   labels=["code", "router"])
        inflight = GaugeMetricFamily("flin_router_requests_in_flight",
                                     "Requests not yet answered", labels=["router"])
        uptime = GaugeMetricFamily("flin_router_uptime_seconds",
                                   "Seconds since the router started", labels=["router"])
        depth = GaugeMetricFamily("flin_shard_queue_depth",
                                  "Ops queued in the router or in flight to the shard",
                                  labels=["shard", "router"])
        lat = HistogramMetricFamily("flin_request_duration_seconds",
                                    "Request latency seen by the router, by command kind",
                                    labels=["op", "router"])
        for i, a in enumerate(answers):
            if not a:
                continue
            r, rid = a["router"], str(i)
            reqs.add_metric([rid], r["requests"])
            for name, n in sorted(r["errors"].items()):
                errs.add_metric([name, rid], n)
            inflight.add_metric([rid], r["in_flight"])
            uptime.add_metric([rid], r["uptime_s"])
            for s, q in enumerate(r["queues"]):
                depth.add_metric([str(s), rid], q["queued"] + q["in_flight"])
            for op, h in sorted(r["latency"].items()):
                counts = {int(k): c for k, c in h["buckets"].items()}
                buckets = []
                for us, first_above in _BOUNDS:
                    below = sum(c for k, c in counts.items() if k < first_above)
                    buckets.append(("%g" % (us / 1e6), below))
                buckets.append(("+Inf", h["count"]))
                lat.add_metric([op, rid], buckets, sum_value=h["sum_s"])
        yield from (reqs, errs, inflight, uptime, depth, lat)
        yield from self._shards(st)

    def _shards(self, st: dict) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        ops = CounterMetricFamily("flin_requests", "Ops applied by a shard, by kind",
                                  labels=["op", "shard"])
        errs = CounterMetricFamily("flin_shard_errors", "Errors a shard answered",
                                   labels=["code", "shard"])
        up = GaugeMetricFamily("flin_shard_up", "1 if the shard answered", labels=["shard"])
        keys = GaugeMetricFamily("flin_shard_keys", "Keys (an estimate past 10,000)",
                                 labels=["shard"])
        disk = GaugeMetricFamily("flin_shard_disk_bytes", "Bytes of the shard's LevelDB files",
                                 labels=["shard"])
        hits = CounterMetricFamily("flin_shard_read_cache_hits", "Read cache hits",
                                   labels=["shard"])
        misses = CounterMetricFamily("flin_shard_read_cache_misses", "Read cache misses",
                                     labels=["shard"])
        comp = GaugeMetricFamily("flin_shard_compaction_running", "1 while a compaction runs",
                                 labels=["shard"])
        comps = CounterMetricFamily("flin_shard_compactions", "Compactions finished",
                                    labels=["shard"])
        snaps = GaugeMetricFamily("flin_shard_snapshots_open", "Snapshots held (backups)",
                                  labels=["shard"])
        hot = GaugeMetricFamily("flin_shard_hot", "1 if the shard's load is far above the mean",
                                labels=["shard"])
        alive = [s for s in st["shards"] if s.get("alive")]
        hot_ids = figures.hot_shards({s["id"]: figures.load(s) for s in alive})
        for s in st["shards"]:
            sid = str(s["id"])
            up.add_metric([sid], 1 if s.get("alive") else 0)
            if not s.get("alive"):
                continue
            for op, n in sorted(s["ops"].items()):
                ops.add_metric([op, sid], n)
            for code, n in sorted(s["errors"].items()):
                errs.add_metric([code, sid], n)
            keys.add_metric([sid], s["keys"])
            disk.add_metric([sid], s["disk_bytes"])
            if s.get("cache"):
                hits.add_metric([sid], s["cache"]["hits"])
                misses.add_metric([sid], s["cache"]["misses"])
            comp.add_metric([sid], 1 if s["compaction"]["running"] else 0)
            comps.add_metric([sid], s["compaction"]["runs"])
            snaps.add_metric([sid], s["snapshots"])
            hot.add_metric([sid], 1 if s["id"] in hot_ids else 0)
        yield from (ops, errs, up, keys, disk, hits, misses, comp, comps, snaps, hot)


def _local_endpoint(bind: str) -> str:
    """Where this host reaches a router bound to ``bind`` (wildcards -> loopback)."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:", "tcp://:::"):
        if bind.startswith(wildcard):
            return "tcp://127.0.0.1:" + bind[len(wildcard):]
    return bind


def run(cfg: Config) -> int:
    """The exporter process's main; returns its exit code."""
    try:
        from prometheus_client import start_http_server
        from prometheus_client.registry import CollectorRegistry
    except ImportError:
        log.error("--metrics-port needs prometheus_client: pip install 'flin[metrics]'")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registry = CollectorRegistry(auto_describe=False)
    collector = FlinCollector([_local_endpoint(ep) for ep in cfg.endpoints()])
    registry.register(collector)
    port = cfg.metrics_port or 0
    try:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on 127.0.0.1:%d: %s", cfg.metrics_port, exc)
        return 2
    log.debug("metrics: serving http://127.0.0.1:%d/metrics", cfg.metrics_port)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    collector.close()
    log.debug("metrics: stopped")
    return 0
