"""Store.apply never acknowledges a write whose batch failed, also when a SCAN
or SNAPSHOT_OPEN in the same message commits early. These run the real
Store on a real LevelDB; the failure is a real LevelDB refusal: the store's
sticky write-failure state (set as after a failed append), which makes every
commit fail until the shard reopens."""
import time

import pytest

from flin import errors
from flin.protocol import GET, SCAN, SET, SNAPSHOT_OPEN, ErrorReply
from flin.shardworker import admin
from flin.shardworker.handlers import HANDLERS
from flin.shardworker.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "shard"), HANDLERS, create=True)
    yield s
    s.close()


def failing(store: Store) -> None:
    store.write_failed_at = time.monotonic()   # as after a failed log append


def is_storage_error(r) -> bool:
    return type(r) is ErrorReply and r.code == errors.StorageError.code


def test_write_before_a_scan_whose_commit_fails_is_not_acknowledged(store):
    failing(store)
    results = store.apply([[SET, b"a", b"v1", None, 0], [SCAN, b"", None, 10, False]])
    assert is_storage_error(results[0]), results
    store.write_failed_at = 0.0
    assert store.apply([[GET, b"a"]]) == [None]


def test_write_before_a_snapshot_whose_commit_fails_is_not_acknowledged(store):
    try:
        failing(store)
        results = store.apply([[SET, b"a", b"v1", None, 0], [SNAPSHOT_OPEN]])
        assert is_storage_error(results[0]), results
    finally:
        admin.close(store)


def test_write_committed_by_a_scan_stays_acknowledged_when_a_later_commit_fails(store):
    results = store.apply([[SET, b"a", b"v1", None, 0], [SCAN, b"", None, 10, False]])
    assert results[0] is None and results[1][0] == [b"a"]
    # now a message whose scan commits SET a, then SET b fails at the end
    orig = store._commit
    calls = []

    def commit_then_fail():   # the first commit goes through, the second is refused
        calls.append(1)
        if len(calls) == 2:
            store.write_failed_at = time.monotonic()
        return orig()
    store._commit = commit_then_fail
    results = store.apply([[SET, b"a", b"v2", None, 0], [SCAN, b"", None, 10, False],
                           [SET, b"b", b"w", None, 0]])
    assert results[0] is None, results            # written by the scan's commit
    assert is_storage_error(results[2]), results  # never written
    store.write_failed_at = 0.0
    store._commit = orig
    assert store.apply([[GET, b"a"], [GET, b"b"]]) == [b"v2", None]


def test_apply_some_commits_and_stops_after_the_byte_budget(store):
    """The worker's segments: ops run until the values they read or wrote
    pass the budget (the op that passes it included), are committed, and
    the rest is left for the next call."""
    v = b"x" * 1000
    ops = [[SET, b"a", v, None, 0], [GET, b"a"], [SET, b"b", v, None, 0], [GET, b"zz"]]
    results, end = store.apply_some(ops, 0, 100, 1500)
    assert results == [None, v] and end == 2          # 1000 written + 1001 read > 1500
    assert store.db.get(b"da") is not None            # committed before it answered
    results, end = store.apply_some(ops, end, 100, 1500)
    assert results == [None, None] and end == 4
    results, end = store.apply_some(ops, 0, 3, -1)     # at most 3 ops, no byte limit
    assert len(results) == 3 and end == 3
