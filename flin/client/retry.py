"""When the client sends a command again, and how long it waits first.

The rules are pure functions (no sockets, no clock), so they are tested
alone; ``Attempts`` applies them to one call against its deadline, for the
sync and the asyncio client alike (only their waiting differs).

- A command whose outcome is unknown (a timeout, ``OutcomeUnknown``) is
  resent only if ``protocol.retry_safe`` says so: the same effect and the
  same answer the second time (GET, SET without NX/XX, MSET), or a request
  uid the shard remembers (INCR, CAS).
- A command refused before it was applied (``ShardUnavailable``,
  ``Overloaded``, ``ShuttingDown``: ``retryable``) is resent whatever it is.
- Never past ``retries`` extra attempts, nor with less than ``MIN_LEFT_S`` of
  the call's timeout left.
"""
from __future__ import annotations

import time
from typing import Any

from .. import errors
from ..protocol import ErrorReply, retry_safe

MIN_LEFT_S = 0.05          # s of the call's timeout below which no attempt is started
BASE_DELAY_S = 0.05        # first wait after a refusal; doubles each attempt


def retry_error(err: errors.ServerError, cmd: list[Any], attempt: int, retries: int,
                left: float) -> bool:
    """Send ``cmd`` again after the server answered ``err`` on ``attempt``
    (0 first), with ``left`` seconds of the call's timeout remaining?"""
    if attempt >= retries or left <= MIN_LEFT_S or not err.retryable:
        return False
    return not isinstance(err, errors.OutcomeUnknown) or retry_safe(cmd)


def retry_timeout(cmd: list[Any], attempt: int, retries: int, left: float) -> bool:
    """Send ``cmd`` again after no reply came in time?"""
    return attempt < retries and left >= MIN_LEFT_S and retry_safe(cmd)


def delay(attempt: int, left: float) -> float:
    """Seconds to wait before attempt ``attempt`` (1 the first retry): doubling,
    never more than half of what is left."""
    return min(BASE_DELAY_S * (1 << attempt), max(0.0, left) / 2)


class Attempts:
    """One call's attempts: ``left()`` is the time to give the next one;
    after a timeout ``timed_out`` returns (send again now) or re-raises it;
    after an error reply ``refused`` returns the seconds to wait before
    sending again, or raises the reply's error."""

    __slots__ = ("cmd", "retries", "deadline", "n")

    def __init__(self, cmd: list[Any], retries: int, timeout: float) -> None:
        self.cmd, self.retries = cmd, retries
        self.deadline = time.monotonic() + timeout
        self.n = 0

    def left(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001)

    def timed_out(self, exc: errors.Timeout) -> None:
        if not retry_timeout(self.cmd, self.n, self.retries, self.deadline - time.monotonic()):
            raise exc
        self.n += 1

    def refused(self, reply: ErrorReply) -> float:
        err = errors.error_for_code(reply.code, reply.message)
        if not retry_error(err, self.cmd, self.n, self.retries, self.deadline - time.monotonic()):
            raise err
        self.n += 1
        return delay(self.n, self.deadline - time.monotonic())
