"""Values near the 64 MiB limit are slow work, not a stalled shard: eight
clients reading one 64 MiB key while another client writes small values to
the same shard, with the default shard timeout (2 s). A SIGSTOPped worker is
still detected within about the timeout (``test_faults_supervision``)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter

from flin import errors
from flin.protocol import GET, INCR, SET
from tests.support import faults as faultlib
from tests.support.cluster import ROOT, make_cluster

READERS, ROUNDS = 8, 3

# one reader: ROUNDS GETs of the big key, a tally of the outcomes as JSON
_READER = r"""
import hashlib, json, sys, flin
from flin import errors
from flin.protocol import GET, INCR, SET
endpoint, key, digest, rounds = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tally = {}
with flin.Client(endpoint, timeout=60.0) as cl:
    for _ in range(rounds):
        try:
            v = cl.get(key)
            what = "ok" if v is not None and hashlib.sha256(v).hexdigest() == digest else "wrong"
        except errors.FlinError as exc:
            what = type(exc).__name__
        tally[what] = tally.get(what, 0) + 1
print(json.dumps(tally))
"""


def test_big_values_are_progress_not_a_stall(tmp_short):
    c = make_cluster(tmp_short, 4).start()
    shard = 1
    try:
        big, small = faultlib.keys_on(shard, 4, 2, "bv")
        value = os.urandom(64 << 20)
        digest = hashlib.sha256(value).hexdigest()
        with c.client(timeout=30) as cl:
            cl.set(big, value)
        readers = [subprocess.Popen([sys.executable, "-c", _READER, c.endpoint, big.hex(),
                                     digest, str(ROUNDS)], cwd=ROOT, stdout=subprocess.PIPE)
                   for _ in range(READERS)]
        latencies: list[float] = []
        failures: Counter = Counter()
        t0 = time.monotonic()
        try:
            with c.client(timeout=10.0, retries=0) as cl:
                n = 0
                while any(r.poll() is None for r in readers):
                    n += 1
                    t = time.monotonic()
                    try:
                        cl.set(small, b"%d" % n)
                    except errors.FlinError as exc:
                        failures[type(exc).__name__] += 1
                    latencies.append(time.monotonic() - t)
                    time.sleep(0.02)
                    assert time.monotonic() - t0 < 180, "readers still running"
            tallies: Counter = Counter()
            for r in readers:
                out, _ = r.communicate(timeout=30)
                tallies.update(json.loads(out))
        finally:
            for r in readers:
                if r.poll() is None:
                    r.kill()
                    r.wait()
        took = time.monotonic() - t0
        latencies.sort()
        p99 = latencies[int(0.99 * (len(latencies) - 1))]
        with open(c.log_path, errors="replace") as f:
            stalls = [line for line in f if "marked stalled" in line]
        print("\n[big values] %d readers x %d GETs of 64 MiB in %.1fs: %s; %d small SETs on "
              "the same shard: p99 %.3fs, max %.3fs, failures %s; stalls logged: %d"
              % (READERS, ROUNDS, took, dict(tallies), len(latencies), p99, latencies[-1],
                 dict(failures), len(stalls)))
        assert tallies == {"ok": READERS * ROUNDS}, tallies
        assert not failures, failures
        assert not stalls, stalls[:3]
        assert p99 < 8.0, p99       # they wait for the 64 MiB reads queued before them
    finally:
        assert c.stop() == 0


def test_a_batch_of_big_values_answered_in_parts(cluster):
    """The worker answers a batch whose values are big in parts, committed as
    it goes: every entry of a pipeline mixing big reads and small writes on
    one shard gets its own result, in order."""
    shard = 2
    big, small, counter = faultlib.keys_on(shard, cluster.shards, 3, "parts")
    value = os.urandom(12 << 20)
    with cluster.client(timeout=30) as cl:
        cl.set(big, value)
        got = cl.execute([[GET, big], [SET, small, b"s", None, 0], [GET, big],
                          [GET, b"parts:missing"], [INCR, counter, 5, None], [GET, small]])
        assert got == [value, None, value, None, 5, b"s"]
        assert cl.mget([big, small, big]) == [value, b"s", value]
