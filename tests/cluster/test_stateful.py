"""A Hypothesis state machine holding the cluster against a plain dict.

Every example works under its own key prefix on one module-scoped cluster,
so examples never see each other's keys."""
from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule,
    run_state_machine_as_test,
)

from flin import errors
from flin.protocol import INT64_MAX, INT64_MIN

_INT = re.compile(rb"0|-?[1-9][0-9]*")   # as the shard reads a counter (Redis's rule): no "-0"
_examples = itertools.count()

suffixes = st.sampled_from([b"", b"a", b"ab", b"b", b"\x00", b"\xff", b"a\x00", b"zz", b"k1", b"k2"])
values = st.one_of(
    st.sampled_from([b"", b"0", b"1", b"-1", b"41", b"abc", b"1.5", b" 1", b"01", b"-0x",
                     str(INT64_MAX).encode(), str(INT64_MIN).encode(),
                     str(INT64_MAX + 1).encode(), str(INT64_MIN - 1).encode()]),
    st.binary(max_size=6),
)
increments = st.one_of(st.integers(-3, 3), st.sampled_from([INT64_MAX, INT64_MIN, 10**18]))


def as_int(v: bytes) -> int | None:
    if not _INT.fullmatch(v):
        return None
    n = int(v)
    return n if INT64_MIN <= n <= INT64_MAX else None


class ClusterVsDict(RuleBasedStateMachine):
    db = None  # the client, set by the test

    def __init__(self) -> None:
        super().__init__()
        self.prefix = b"sm:%d:" % next(_examples)
        self.model: dict[bytes, bytes] = {}

    def k(self, suffix: bytes) -> bytes:
        return self.prefix + suffix

    @initialize()
    def empty(self) -> None:
        assert self.db.scan(self.prefix, limit=100) == ([], None)

    @rule(s=suffixes, v=values)
    def set(self, s, v):
        assert self.db.set(self.k(s), v) is None
        self.model[self.k(s)] = v

    @rule(s=suffixes, v=values)
    def set_nx(self, s, v):
        key = self.k(s)
        wrote = self.db.set(key, v, nx=True)
        assert wrote is (key not in self.model)
        if wrote:
            self.model[key] = v

    @rule(s=suffixes, v=values)
    def set_xx(self, s, v):
        key = self.k(s)
        wrote = self.db.set(key, v, xx=True)
        assert wrote is (key in self.model)
        if wrote:
            self.model[key] = v

    @rule(s=suffixes)
    def get(self, s):
        assert self.db.get(self.k(s)) == self.model.get(self.k(s))

    @rule(s=suffixes)
    def exists(self, s):
        assert self.db.exists(self.k(s)) is (self.k(s) in self.model)

    @rule(ss=st.lists(suffixes, max_size=5))
    def delete(self, ss):
        keys = [self.k(s) for s in ss]
        n = 0
        for key in keys:
            if key in self.model:
                del self.model[key]
                n += 1
        assert self.db.delete(*keys) == n

    @rule(ss=st.lists(suffixes, max_size=6))
    def mget(self, ss):
        keys = [self.k(s) for s in ss]
        assert self.db.mget(keys) == [self.model.get(k) for k in keys]

    @rule(m=st.dictionaries(suffixes, values, max_size=5))
    def mset(self, m):
        mapping = {self.k(s): v for s, v in m.items()}
        assert self.db.mset(mapping) is None
        self.model.update(mapping)

    @rule(s=suffixes, by=increments, down=st.booleans())
    def incr(self, s, by, down):
        key = self.k(s)
        old = self.model.get(key)
        current = 0 if old is None else as_int(old)
        call = (lambda: self.db.decr(key, by)) if down else (lambda: self.db.incr(key, by))
        if down and by == INT64_MIN:
            return  # -by is not a 64-bit increment
        delta = -by if down else by
        if current is None:
            with pytest.raises(errors.NotAnInteger):
                call()
        elif not INT64_MIN <= current + delta <= INT64_MAX:
            with pytest.raises(errors.Overflow):
                call()
        else:
            assert call() == current + delta
            self.model[key] = b"%d" % (current + delta)
        assert self.db.get(key) == self.model.get(key)

    @rule(s=suffixes, guess=st.one_of(st.none(), values), use_current=st.booleans(), new=values)
    def cas(self, s, guess, use_current, new):
        key = self.k(s)
        expected = self.model.get(key) if use_current else guess
        swapped = self.db.cas(key, expected, new)
        assert swapped is (self.model.get(key) == expected)
        if swapped:
            self.model[key] = new

    @rule(sub=st.sampled_from([b"", b"a", b"k", b"\xff", b"zz"]), page=st.integers(1, 4),
          want_values=st.booleans())
    def scan(self, sub, page, want_values):
        prefix = self.prefix + sub
        want = sorted(k for k in self.model if k.startswith(prefix))
        got = list(self.db.scan_iter(prefix, values=want_values, page=page))
        if want_values:
            assert got == [(k, self.model[k]) for k in want]
        else:
            assert got == want

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def pipeline(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        v = data.draw(values)
        p = self.db.pipeline()
        p.get(key).set(key, v).incr(key).get(key)
        r = p.execute()
        assert r[0] == self.model[key] and r[1] is None
        n = as_int(v)
        if n is None:
            assert isinstance(r[2], errors.NotAnInteger) and r[3] == v
            self.model[key] = v
        elif n == INT64_MAX:
            assert isinstance(r[2], errors.Overflow) and r[3] == v
            self.model[key] = v
        else:
            assert r[2] == n + 1 and r[3] == b"%d" % (n + 1)
            self.model[key] = b"%d" % (n + 1)

    @invariant()
    def same_keys(self):
        got = self.db.scan(self.prefix, limit=100)
        assert got == (sorted(self.model), None)


def run_against(db, examples: int, steps: int) -> None:
    """Run the state machine with ``db`` as its client."""
    ClusterVsDict.db = db
    try:
        run_state_machine_as_test(ClusterVsDict, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        ClusterVsDict.db = None


def test_cluster_behaves_like_a_dict(client):
    run_against(client, 150, 40)


class _AwaitEach:
    """``flin.asyncio.Client`` seen as a blocking client: each call is awaited
    on one event loop that lives as long as the test, so the state machine
    above runs unchanged through the asyncio client's code (its socket, its
    multiplexing, its pipelines and its async scan iterator)."""

    def __init__(self, endpoint: str) -> None:
        import asyncio
        import flin.asyncio
        self.loop = asyncio.new_event_loop()
        self.db = flin.asyncio.Client(endpoint, timeout=10)

    def __getattr__(self, name: str):
        attr = getattr(self.db, name)
        if name == "scan_iter":
            async def collect(*a, **kw):
                return [x async for x in attr(*a, **kw)]
            return lambda *a, **kw: self.loop.run_until_complete(collect(*a, **kw))
        if name == "pipeline":
            return lambda: _AwaitPipeline(self.loop, attr())
        return lambda *a, **kw: self.loop.run_until_complete(attr(*a, **kw))

    def close(self) -> None:
        self.loop.run_until_complete(self.db.close())
        self.loop.close()


class _AwaitPipeline:
    def __init__(self, loop, p) -> None:
        self.loop, self.p = loop, p

    def __getattr__(self, name: str):
        if name == "execute":
            return lambda: self.loop.run_until_complete(self.p.execute())
        queue = getattr(self.p, name)

        def queued(*a, **kw):
            queue(*a, **kw)
            return self
        return queued


def test_the_asyncio_client_behaves_like_a_dict(shared_cluster):
    db = _AwaitEach(shared_cluster.endpoint)
    try:
        run_against(db, 60, 30)
    finally:
        db.close()
