"""incr/decr: signed 64-bit counters stored as ASCII decimal, atomic across processes."""
from __future__ import annotations

import pytest

from flin import errors
from flin.protocol import INT64_MAX, INT64_MIN
from tests.support.racers import run_racers


def test_missing_key_starts_at_zero(client):
    assert client.incr(b"ctr:new") == 1
    assert client.decr(b"ctr:new2") == -1
    assert client.incr(b"ctr:new3", 0) == 0
    assert client.get(b"ctr:new3") == b"0"


def test_stored_as_ascii_decimal(client):
    for _ in range(5):
        client.incr(b"ctr:five")
    assert client.get(b"ctr:five") == b"5"
    client.decr(b"ctr:five", 15)
    assert client.get(b"ctr:five") == b"-10"


def test_incr_an_existing_decimal_value(client):
    client.set(b"ctr:set", b"41")
    assert client.incr(b"ctr:set") == 42
    client.set(b"ctr:neg", "-7")
    assert client.incr(b"ctr:neg", 10) == 3
    assert client.decr(b"ctr:neg", -2) == 5
    assert client.get(b"ctr:neg") == b"5"


def test_by_and_decr_by(client):
    assert client.incr(b"ctr:by", 100) == 100
    assert client.incr(b"ctr:by", -30) == 70
    assert client.decr(b"ctr:by", 70) == 0


@pytest.mark.parametrize("value", [
    b"abc", b"", b"1.5", b" 1", b"1 ", b"+1", b"01", b"1e3", b"0x10", b"--1", b"-",
    b"\x001", "١".encode(),  # an Arabic-Indic digit one
    b"9223372036854775808",  # INT64_MAX + 1: an integer, but not a 64-bit one
    b"-9223372036854775809",
    b"99999999999999999999",
])
def test_not_an_integer_left_untouched(client, value):
    key = b"ctr:bad:" + value
    client.set(key, value, ttl=100)
    for by in (1, -1, 10**18, -(10**18)):
        with pytest.raises(errors.NotAnInteger):
            client.incr(key, by)
    with pytest.raises(errors.NotAnInteger):
        client.decr(key)
    assert client.get(key) == value
    assert 99 < client.ttl(key) <= 100


def test_limits_reachable(client):
    client.set(b"ctr:max", str(INT64_MAX - 1))
    assert client.incr(b"ctr:max") == INT64_MAX
    client.set(b"ctr:min", str(INT64_MIN + 1))
    assert client.decr(b"ctr:min") == INT64_MIN
    assert client.get(b"ctr:min") == str(INT64_MIN).encode()
    assert client.incr(b"ctr:min", INT64_MAX) == -1


def test_overflow_is_an_error_and_leaves_the_value(client):
    client.set(b"ctr:of", str(INT64_MAX))
    with pytest.raises(errors.Overflow):
        client.incr(b"ctr:of")
    assert client.get(b"ctr:of") == str(INT64_MAX).encode()
    client.set(b"ctr:uf", str(INT64_MIN))
    with pytest.raises(errors.Overflow):
        client.decr(b"ctr:uf")
    with pytest.raises(errors.Overflow):
        client.incr(b"ctr:uf", INT64_MIN)
    assert client.get(b"ctr:uf") == str(INT64_MIN).encode()
    assert client.incr(b"ctr:missing-of", INT64_MAX) == INT64_MAX
    with pytest.raises(errors.Overflow):
        client.incr(b"ctr:missing-of", INT64_MAX)


def test_increment_beyond_64_bits_refused(client):
    with pytest.raises((errors.BadRequest, OverflowError, ValueError)):
        client.incr(b"ctr:huge", 2 ** 63)
    assert client.get(b"ctr:huge") is None


def test_errors_are_server_errors(client):
    client.set(b"ctr:txt", b"x")
    with pytest.raises(errors.ServerError):
        client.incr(b"ctr:txt")
    with pytest.raises(errors.FlinError):
        client.incr(b"ctr:txt")


def test_incr_keeps_expiry(client):
    client.set(b"ctr:ttl", b"1", ttl=100)
    assert client.incr(b"ctr:ttl") == 2
    assert 99 < client.ttl(b"ctr:ttl") <= 100


def test_pipelined_increments_apply_in_order(client):
    p = client.pipeline()
    for _ in range(100):
        p.incr(b"ctr:pipe")
    assert p.execute() == list(range(1, 101))
    assert client.get(b"ctr:pipe") == b"100"


def test_eight_processes_500_incr_each_end_at_4000(shared_cluster, client):
    results = run_racers(shared_cluster.endpoint, 8, """
        seen = [c.incr(b"ctr:race") for _ in range(500)]
        assert seen == sorted(seen) and len(set(seen)) == 500
        result = seen
    """)
    assert client.get(b"ctr:race") == b"4000"
    # every intermediate value was handed out to exactly one increment
    everything = sorted(v for r in results for v in r)
    assert everything == list(range(1, 4001))
