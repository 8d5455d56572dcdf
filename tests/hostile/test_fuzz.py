"""RELIABILITY.md case 15: random and mutated frames against a running cluster.

A seeded mutator (tests/hostile.py) turns valid requests into malformed ones
(bit flips, cuts, splices, bomb headers, values of the wrong type, extra
frames) and Hypothesis draws messages of its own. They are pipelined from a
raw DEALER, many in flight. Then: exactly one reply per message, only the
error codes a bad request can earn, none caught late by a shard (the router's
checks come first), every process the same and alive, memory within a bound,
and the keys written before the attack all intact.

The default run sends more than 100,000 messages in well under a minute;
``scripts/test --soak`` (FLIN_SOAK=1) sends millions.
"""
from __future__ import annotations

import sys
import tempfile
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cluster import alive, make_cluster
from tests.support.hostile import (
    EXPECTED_CODES, SOAK, Mutator, RawPeer, Tally, assert_memory_bounded, check_known,
    cluster_rss, known_items, write_known,
)

MUTATED = 200_000            # messages from the seeded mutator in the default run
SOAK_MUTATED = 3_000_000     # ... and in --soak
KNOWN = 5_000                # keys written before the attack, checked after

TOTAL = Tally()              # every hostile message of this module, for the summary


@pytest.fixture(scope="module")
def target():
    """A 4-shard cluster holding ``KNOWN`` keys; the summary is printed at the end."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=4).start()
        items = known_items(KNOWN)
        with c.client() as cl:
            write_known(cl, items)
        try:
            yield c, items
        finally:
            lost = len([p for p in c.pids if not alive(p)])
            print("\nfuzz: %d hostile messages sent, %d replies, %d answered with errors "
                  "(codes %s), %d processes lost"
                  % (TOTAL.sent, TOTAL.replies, TOTAL.errors, dict(TOTAL.codes), lost),
                  file=sys.stderr)
            assert c.stop() == 0


def attack(cluster, items, send) -> Tally:
    """Run ``send(peer, tally)``, then every check of an attack's aftermath."""
    pids = cluster.child_pids()
    before = cluster_rss(cluster)
    tally = Tally()
    with RawPeer(cluster.endpoint, window=2000) as peer:
        send(peer, tally)
    TOTAL.add(tally)
    assert tally.replies == tally.expected >= tally.sent, tally
    assert set(tally.codes) <= EXPECTED_CODES, tally.codes
    assert not tally.late, "errors only a shard caught: %s" % tally.late[:5]
    assert cluster.child_pids() == pids, "a process died or was restarted"
    assert all(alive(p) for p in pids)
    assert_memory_bounded(before, cluster_rss(cluster), bound_kib=64 * 1024)
    with cluster.client() as cl:
        check_known(cl, items)
    return tally


def test_seeded_mutator(target):
    cluster, items = target
    t0 = time.monotonic()
    tally = attack(cluster, items, lambda peer, t: peer.blast(Mutator(seed=7).messages(MUTATED), t))
    assert tally.sent >= 100_000
    assert tally.errors > tally.sent // 2        # most of them are malformed
    print("\nmutator: %d messages in %.1fs, %d answered with errors"
          % (tally.sent, time.monotonic() - t0, tally.errors), file=sys.stderr)


# -- Hypothesis ----------------------------------------------------------------------------
_leaf = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats()
         | st.binary(max_size=24) | st.text(max_size=8))
_value = st.recursive(_leaf, lambda c: st.lists(c, max_size=5), max_leaves=16)
_command = st.builds(lambda op, args: [op, *args],
                     st.integers(0, 13) | st.integers(-3, 300), st.lists(_value, max_size=5))
_request = st.builds(lambda rid, cmds: msgpack.packb([rid, cmds]),
                     st.integers(0, 2 ** 64 - 1) | _value, st.lists(_command, max_size=4) | _value)
_message = st.one_of(
    st.binary(max_size=80),
    _request,
    st.builds(lambda b, cut: b[:cut], _request, st.integers(0, 40)),
    st.builds(lambda b, i, junk: b[:i] + junk + b[i:], _request, st.integers(0, 40),
              st.binary(min_size=1, max_size=6)),
    st.lists(st.binary(max_size=16) | _request, min_size=2, max_size=4),
)


def test_hypothesis_messages(target):
    cluster, items = target

    def send(peer: RawPeer, tally: Tally) -> None:
        @settings(max_examples=2000 if SOAK else 200, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(_message, min_size=1, max_size=200))
        def run(messages):
            peer.blast(messages, tally)
        run()

    tally = attack(cluster, items, send)
    assert tally.sent >= 150


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="long fuzz run: scripts/test --soak (FLIN_SOAK=1)")
def test_soak_mutator(target):
    cluster, items = target
    for seed in range(100, 100 + SOAK_MUTATED // 500_000):
        attack(cluster, items, lambda peer, t: peer.blast(Mutator(seed).messages(500_000), t))
