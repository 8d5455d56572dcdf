"""What one load process is told (``PhaseSpec``) and what it records
(``Recorder``): shared by ``load.py``, which runs a phase, and the drivers,
which ``load.py`` starts (so the drivers never import ``load.py``)."""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

HIST_MAX_NS = 3_600 * 10**9        # the largest latency the histogram holds: 1 hour, in ns
HIST_DIGITS = 3                    # significant digits kept by the histogram


@dataclass
class PhaseSpec:
    """Everything a load process needs to know (it is forked with it)."""

    target: str                    # flin | engine | redis
    phase: str                     # a workload name
    processes: int
    workers: int                   # logical workers over all processes
    pipeline: int                  # requests in flight per worker
    batch: int                     # keys per request
    value_size: int                # bytes
    keys: int                      # key space
    key_range: int                 # indices below this hold a value (reading phases)
    duration: float                # s of load before the processes drain
    scan_limit: int                # keys per SCAN page
    seed: int
    address: str = ""              # flin endpoint, engine folder, or redis socket path
    timeout: float = 30.0          # s without a reply before a process gives up
    client: str = "sync"           # against flin: sync (flin_driver), asyncio or uvloop (flin_aio_driver)

    def workers_of(self, proc: int) -> int:
        """Logical workers driven by load process ``proc``."""
        base, extra = divmod(self.workers, self.processes)
        return base + (1 if proc < extra else 0)


class Recorder:
    """One load process's counts and buffered latencies."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.lat = array("q")
        self.ops = self.requests = self.errors = self.misses = 0
        self.error_samples: list[str] = []
        self.t_start = self.t_end = 0
        self.cpu = 0.0

    def done(self, ns: int, ok: int, failed: int = 0, missing: int = 0,
             why: Any = None) -> None:
        self.lat.append(ns)
        self.requests += 1
        self.ops += ok
        self.counter.value = self.ops
        if failed:
            self.errors += failed
            if len(self.error_samples) < 5:
                self.error_samples.append(str(why))
        if missing:
            self.misses += missing

    def histogram(self) -> HdrHistogram:
        h = HdrHistogram(1, HIST_MAX_NS, HIST_DIGITS)
        record = h.record_value
        for ns in self.lat:
            record(min(max(ns, 1), HIST_MAX_NS))
        return h
