"""What the load is, whatever it runs against: key names, which keys each
request touches, and what kind of request it is.

Keys are ``flinbench:k:`` + a 10-digit index in ``[0, keys)``, so they sort
in index order (SCAN pages walk consecutive indices). Counters for INCR live
apart under ``flinbench:c:``.

The WRITE phase stripes the key space over the load processes: process ``p``
of ``P`` writes indices ``p, p + P, p + 2P, ...`` (wrapping at ``keys``), so
after it every index below ``P * min(written per process)`` holds a value.
The reading phases draw keys from that written range (``key_range``) only:
uniformly (read, mixed, scan) or with Zipfian popularity (zipf).
"""
from __future__ import annotations

import bisect
import itertools
import random

KEY_PREFIX = b"flinbench:k:"
COUNTER_PREFIX = b"flinbench:c:"

WORKLOADS = ("write", "read", "mixed", "zipf", "scan", "incr")
READING = frozenset({"read", "mixed", "zipf", "scan"})   # need the WRITE phase's data

# request kinds
WRITE, READ, SCAN, INCR = "write", "read", "scan", "incr"

MIXED_READS = 0.9        # fraction of requests that read in the mixed workload
ZIPF_S = 0.99            # Zipf exponent (YCSB's default): rank r drawn with weight 1/r^s
SCAN_PAGE = 100          # keys per SCAN request when --batch is 1


def key(i: int) -> bytes:
    return KEY_PREFIX + b"%010d" % i


def counter(i: int) -> bytes:
    return COUNTER_PREFIX + b"%010d" % i


def phases_for(workloads: list[str] | tuple[str, ...]) -> list[str]:
    """The phases to run, in order: a reading workload with no WRITE phase
    before it gets one first (it fills the keys that it reads)."""
    phases: list[str] = []
    for w in workloads:
        if w not in WORKLOADS:
            raise ValueError("unknown workload %r (one of %s)" % (w, ", ".join(WORKLOADS)))
        if w in READING and "write" not in phases:
            phases.append("write")
        if w not in phases:
            phases.append(w)
    return phases


def scan_limit(batch: int) -> int:
    """Keys per SCAN page: ``--batch``, or SCAN_PAGE when it is 1."""
    return batch if batch > 1 else SCAN_PAGE


class Plan:
    """The requests of one load process in one phase: ``next()`` gives
    ``(kind, [index, ...])``; ``issued`` counts the keys handed out."""

    def __init__(self, phase: str, *, batch: int, keys: int, key_range: int,
                 proc: int, procs: int, seed: int) -> None:
        self.phase, self.batch, self.keys = phase, batch, keys
        self.range = max(1, min(key_range, keys))
        self.proc, self.procs = proc, procs
        self.rand = random.Random(seed * 1_000_003 + proc)
        self.issued = 0
        self._cdf: list[float] | None = None
        if phase == "zipf":
            self._cdf = list(itertools.accumulate(
                1.0 / (r ** ZIPF_S) for r in range(1, self.range + 1)))
        self.next = {
            "write": self._write, "read": self._read, "mixed": self._mixed,
            "zipf": self._zipf, "scan": self._scan, "incr": self._incr,
        }[phase]
        if batch == 1 and phase in ("write", "read"):   # the hot single-key paths, lean
            self.next = self._write1 if phase == "write" else self._read1

    def _uniform(self, n: int) -> list[int]:
        r, rnd = self.range, self.rand.random
        return [int(rnd() * r) for _ in range(n)]

    def _write(self) -> tuple[str, list[int]]:
        j, b, p, k = self.issued, self.batch, self.procs, self.keys
        self.issued = j + b
        return WRITE, [((j + n) * p + self.proc) % k for n in range(b)]

    def _write1(self) -> tuple[str, list[int]]:
        j = self.issued
        self.issued = j + 1
        return WRITE, [(j * self.procs + self.proc) % self.keys]

    def _read1(self) -> tuple[str, list[int]]:
        self.issued += 1
        return READ, [int(self.rand.random() * self.range)]

    def _read(self) -> tuple[str, list[int]]:
        self.issued += self.batch
        return READ, self._uniform(self.batch)

    def _mixed(self) -> tuple[str, list[int]]:
        self.issued += self.batch
        kind = READ if self.rand.random() < MIXED_READS else WRITE
        return kind, self._uniform(self.batch)

    def _zipf(self) -> tuple[str, list[int]]:
        self.issued += self.batch
        cdf, rnd = self._cdf, self.rand.random
        assert cdf is not None
        total = cdf[-1]
        return READ, [bisect.bisect_left(cdf, rnd() * total) for _ in range(self.batch)]

    def _scan(self) -> tuple[str, list[int]]:
        self.issued += 1
        return SCAN, self._uniform(1)

    def _incr(self) -> tuple[str, list[int]]:
        self.issued += self.batch
        k, rnd = self.keys, self.rand.random
        return INCR, [int(rnd() * k) for _ in range(self.batch)]


def written_range(issued_per_proc: list[int], procs: int, keys: int) -> int:
    """Indices certainly written by a WRITE phase whose processes handed out
    ``issued_per_proc`` keys each (see the module docstring)."""
    if not issued_per_proc:
        return 0
    return min(keys, procs * min(issued_per_proc))
