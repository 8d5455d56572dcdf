"""The client's retry rules alone (``flin.client.retry``)."""
from __future__ import annotations

import pytest

from flin import errors
from flin.client import retry
from flin.protocol import DEL, GET, INCR, NX, SET

GET_K = [GET, b"k"]
SET_NX = [SET, b"k", b"v", None, NX]
SET_PLAIN = [SET, b"k", b"v", None, 0]
INCR_UID = [INCR, b"k", 1, b"uid"]
DEL_K = [DEL, [b"k"]]


@pytest.mark.parametrize("err,cmd,again", [
    (errors.ShardUnavailable("down"), GET_K, True),      # refused before applying: any command
    (errors.ShardUnavailable("down"), SET_NX, True),
    (errors.Overloaded("full"), DEL_K, True),
    (errors.ShuttingDown("bye"), SET_NX, True),
    (errors.OutcomeUnknown("?"), GET_K, True),           # unknown outcome: only the safe ones
    (errors.OutcomeUnknown("?"), SET_PLAIN, True),
    (errors.OutcomeUnknown("?"), INCR_UID, True),        # the uid makes it apply once
    (errors.OutcomeUnknown("?"), SET_NX, False),
    (errors.OutcomeUnknown("?"), DEL_K, False),          # would answer 0 for what it deleted
    (errors.NotAnInteger("no"), INCR_UID, False),        # an answer, not a failure
    (errors.BadRequest("no"), GET_K, False),
    (errors.StorageError("disk"), SET_PLAIN, False),
])
def test_which_errors_are_retried(err, cmd, again):
    assert retry.retry_error(err, cmd, attempt=0, retries=3, left=5.0) is again


def test_no_retry_past_the_count_or_the_deadline():
    err = errors.ShardUnavailable("down")
    assert retry.retry_error(err, GET_K, attempt=2, retries=3, left=5.0)
    assert not retry.retry_error(err, GET_K, attempt=3, retries=3, left=5.0)
    assert not retry.retry_error(err, GET_K, attempt=0, retries=3, left=retry.MIN_LEFT_S)
    assert not retry.retry_error(err, GET_K, attempt=0, retries=0, left=5.0)


def test_timeouts_are_resent_only_when_safe():
    assert retry.retry_timeout(GET_K, 0, 3, 5.0)
    assert retry.retry_timeout(INCR_UID, 0, 3, 5.0)
    assert not retry.retry_timeout(SET_NX, 0, 3, 5.0)
    assert not retry.retry_timeout(DEL_K, 0, 3, 5.0)
    assert not retry.retry_timeout(GET_K, 3, 3, 5.0)
    assert not retry.retry_timeout(GET_K, 0, 3, 0.01)


def test_the_delay_doubles_and_never_takes_more_than_half_of_what_is_left():
    assert [retry.delay(a, 100.0) for a in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert retry.delay(6, 1.0) == 0.5
    assert retry.delay(1, -1.0) == 0.0
