"""The client refuses arguments it cannot send faithfully, with its own typed
error (``flin.errors.InvalidArgument``: a ``FlinError`` and a ``ValueError``)
and before anything is sent; through the real client against a real cluster,
counting the requests the router received."""
from __future__ import annotations

import math

import pytest

import flin
from flin import errors

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
YEARS_100 = 100 * 365 * 86400


def refused(client, call, says: str) -> None:
    """``call(client)`` raises InvalidArgument naming the problem; the router got nothing."""
    before = client.stats()["router"]["requests"]
    with pytest.raises(errors.FlinError) as caught:
        call(client)
    assert isinstance(caught.value, ValueError), repr(caught.value)
    assert type(caught.value).__name__ == "InvalidArgument", repr(caught.value)
    assert says in str(caught.value), str(caught.value)
    assert client.stats()["router"]["requests"] == before + 1     # only this stats call


@pytest.mark.parametrize("ttl", [math.inf, -math.inf, math.nan, 1e30, YEARS_100 + 1, 10 ** 400,
                                 0, -1, True, "5"])
def test_set_and_mset_refuse_a_ttl_out_of_range(client, ttl):
    refused(client, lambda c: c.set(b"ca:k", b"v", ttl=ttl), "ttl")
    refused(client, lambda c: c.mset({b"ca:k": b"v"}, ttl=ttl), "ttl")
    refused(client, lambda c: c.pipeline().set(b"ca:k", b"v", ttl=ttl), "ttl")
    assert client.get(b"ca:k") is None


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan, 1e30, YEARS_100 + 1, "5"])
def test_expire_refuses_seconds_out_of_range(client, seconds):
    client.set(b"ca:e", b"v")
    refused(client, lambda c: c.expire(b"ca:e", seconds), "seconds")
    assert client.get(b"ca:e") == b"v" and client.ttl(b"ca:e") == -1


@pytest.mark.parametrize("by", [1.7, 2.0, "3", None, True, 2 ** 63, 2 ** 64, INT64_MIN - 1])
def test_incr_refuses_a_by_that_is_not_a_64_bit_integer(client, by):
    client.set(b"ca:n", b"10")
    refused(client, lambda c: c.incr(b"ca:n", by), "by")
    refused(client, lambda c: c.pipeline().incr(b"ca:n", by), "by")
    assert client.get(b"ca:n") == b"10"


@pytest.mark.parametrize("by", [1.7, INT64_MIN, 2 ** 63])
def test_decr_refuses_a_by_whose_negation_is_not_a_64_bit_integer(client, by):
    client.set(b"ca:d", b"10")
    refused(client, lambda c: c.decr(b"ca:d", by), "by")
    assert client.get(b"ca:d") == b"10"


def test_the_limits_themselves_are_accepted(client):
    assert client.incr(b"ca:max", INT64_MAX) == INT64_MAX
    assert client.decr(b"ca:min", INT64_MAX) == -INT64_MAX
    assert client.incr(b"ca:min", -1) == INT64_MIN
    client.set(b"ca:long", b"v", ttl=YEARS_100)
    assert client.ttl(b"ca:long") > YEARS_100 - 10
    client.set(b"ca:short", b"v", ttl=0.0001)           # rounds up to 1 ms, never to 0
    assert client.expire(b"ca:long", YEARS_100) is True
    assert client.expire(b"ca:long", -1e30) is True     # <= 0: deleted now
    assert client.get(b"ca:long") is None


@pytest.mark.parametrize("endpoint", ["bogus://x", "tcp://", "no-scheme", "ipc:///tmp/\udcff"])
def test_a_malformed_endpoint_is_an_invalid_argument(endpoint):
    with flin.Client(endpoint, timeout=1) as c:
        with pytest.raises(errors.FlinError) as caught:
            c.get(b"k")
    assert type(caught.value).__name__ == "InvalidArgument", repr(caught.value)
    assert repr(endpoint) in str(caught.value)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 0, -1, 1e308, "5"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_refused(timeout):
    with pytest.raises(errors.FlinError) as caught:
        flin.Client("ipc:///nonexistent", timeout=timeout)
    assert type(caught.value).__name__ == "InvalidArgument", repr(caught.value)
