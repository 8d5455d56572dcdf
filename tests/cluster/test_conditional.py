"""set nx/xx and cas: whether they wrote, and atomic under a race of processes."""
from __future__ import annotations

import pytest

from tests.support.racers import run_racers


def test_nx_writes_only_when_absent(client):
    assert client.set(b"cond:nx", b"first", nx=True) is True
    assert client.get(b"cond:nx") == b"first"
    assert client.set(b"cond:nx", b"second", nx=True) is False
    assert client.get(b"cond:nx") == b"first"
    client.delete(b"cond:nx")
    assert client.set(b"cond:nx", b"third", nx=True) is True
    assert client.get(b"cond:nx") == b"third"


def test_nx_on_empty_value_counts_as_present(client):
    client.set(b"cond:nxe", b"")
    assert client.set(b"cond:nxe", b"x", nx=True) is False
    assert client.get(b"cond:nxe") == b""


def test_xx_writes_only_when_present(client):
    assert client.set(b"cond:xx", b"v", xx=True) is False
    assert client.get(b"cond:xx") is None
    assert client.exists(b"cond:xx") is False
    client.set(b"cond:xx", b"old")
    assert client.set(b"cond:xx", b"new", xx=True) is True
    assert client.get(b"cond:xx") == b"new"


def test_plain_set_returns_none(client):
    assert client.set(b"cond:plain", b"v") is None


def test_nx_and_xx_together_refused(client):
    with pytest.raises(ValueError):
        client.set(b"cond:both", b"v", nx=True, xx=True)
    assert client.get(b"cond:both") is None


def test_nx_with_ttl(client):
    assert client.set(b"cond:nxttl", b"v", ttl=50, nx=True) is True
    assert 49 < client.ttl(b"cond:nxttl") <= 50
    assert client.set(b"cond:nxttl", b"w", ttl=5, nx=True) is False
    assert 49 < client.ttl(b"cond:nxttl") <= 50


def test_cas_expected_none_means_absent(client):
    assert client.cas(b"cond:cas", None, b"1") is True
    assert client.get(b"cond:cas") == b"1"
    assert client.cas(b"cond:cas", None, b"2") is False
    assert client.get(b"cond:cas") == b"1"


def test_cas_swaps_only_on_match(client):
    client.set(b"cond:cas2", b"a")
    assert client.cas(b"cond:cas2", b"b", b"c") is False
    assert client.get(b"cond:cas2") == b"a"
    assert client.cas(b"cond:cas2", b"a", b"c") is True
    assert client.get(b"cond:cas2") == b"c"
    assert client.cas(b"cond:cas2", "c", "d") is True  # str is UTF-8
    assert client.get(b"cond:cas2") == b"d"


def test_cas_empty_is_not_absent(client):
    assert client.cas(b"cond:cas3", b"", b"x") is False
    assert client.get(b"cond:cas3") is None
    client.set(b"cond:cas3", b"")
    assert client.cas(b"cond:cas3", None, b"x") is False
    assert client.cas(b"cond:cas3", b"", b"x") is True
    assert client.get(b"cond:cas3") == b"x"


def test_eight_processes_race_nx_exactly_one_wins(shared_cluster, client):
    keys = [b"cond:race:%d" % i for i in range(40)]
    results = run_racers(shared_cluster.endpoint, 8, """
        result = [c.set(b"cond:race:%d" % i, b"p%d" % me, nx=True) for i in range(40)]
    """)
    for i, key in enumerate(keys):
        winners = [me for me, r in enumerate(results) if r[i] is True]
        assert all(r[i] in (True, False) for r in results)
        assert len(winners) == 1, (key, [r[i] for r in results])
        assert client.get(key) == b"p%d" % winners[0]


def test_eight_processes_cas_increment_loses_no_update(shared_cluster, client):
    client.set(b"cond:casctr", b"0")
    run_racers(shared_cluster.endpoint, 8, """
        done = 0
        while done < 25:
            old = c.get(b"cond:casctr")
            if c.cas(b"cond:casctr", old, b"%d" % (int(old) + 1)):
                done += 1
    """)
    assert client.get(b"cond:casctr") == b"200"
