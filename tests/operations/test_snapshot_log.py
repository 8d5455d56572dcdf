"""Snapshots do not flood the log: opening and closing 2,000 of them through
the real client (one request each way, as a hostile or careless client
might) leaves the cluster log (at the default level, INFO) a few lines
longer at most; releasing many idle snapshots at once is one warning per
shard and sweep, not one per snapshot (the release runs after 60 s idle, so
that part runs on the real Store of a shard, on a real LevelDB)."""
from __future__ import annotations

import logging
import time

from flin.protocol import SNAPSHOT_IDLE_S, SNAPSHOT_OPEN
from flin.shardworker import admin
from flin.shardworker.handlers import HANDLERS
from flin.shardworker.store import Store

OPENS = 2000


def _lines(cluster) -> int:
    with open(cluster.log_path, errors="replace") as f:
        return len(f.read().splitlines())


def test_opening_and_closing_2000_snapshots_writes_almost_nothing_to_the_log(cluster):
    before = _lines(cluster)
    with cluster.client(timeout=30) as c:
        with c.pipeline() as p:
            for i in range(OPENS):
                p.snapshot_open(i % cluster.shards)
        sids = p.results
        assert len(sids) == OPENS and all(type(s) is int for s in sids), sids[:3]
        assert sum(s["snapshots"] for s in c.stats()["shards"]) == OPENS
        with c.pipeline() as p:
            for i, sid in enumerate(sids):
                p.snapshot_close(i % cluster.shards, sid)
        assert p.results == [True] * OPENS
        assert sum(s["snapshots"] for s in c.stats()["shards"]) == 0
    time.sleep(0.5)                      # anything the shards logged has reached the file
    assert _lines(cluster) - before <= 5


def test_releasing_many_idle_snapshots_is_one_warning(tmp_path, caplog):
    store = Store(str(tmp_path / "shard"), HANDLERS, shard=3, create=True)
    try:
        sids = store.apply([[SNAPSHOT_OPEN]] * 1000)
        assert len(store.snapshots) == 1000
        for entry in store.snapshots.values():
            entry[1] -= SNAPSHOT_IDLE_S + 1          # as if unused for over a minute
        with caplog.at_level(logging.INFO, logger="flin.shard"):
            admin.expire_snapshots(store)
        assert store.snapshots == {}
        records = [r for r in caplog.records if r.name == "flin.shard"]
        assert len(records) == 1, [r.getMessage() for r in records[:3]]
        assert records[0].levelno == logging.WARNING
        assert "1000 snapshot" in records[0].getMessage(), records[0].getMessage()
        assert "%x" % sids[0] in records[0].getMessage()   # names one, for the record
    finally:
        admin.close(store)
        store.close()
