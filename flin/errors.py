"""Flin's exceptions: one root, transport failures apart from server errors,
and the client's own refusal of an argument before anything is sent.

A server error travels as a numeric code plus a message (see ``protocol.py``);
``error_for_code`` turns it back into one of the classes below through one
table, the way redis-py maps its error prefixes.
"""
from __future__ import annotations


class FlinError(Exception):
    """Root of every error this package raises."""


class InvalidArgument(FlinError, ValueError):
    """The client refused an argument before sending anything: a ttl or
    seconds not finite or out of range, an integer that is not one or does
    not fit in 64 bits, a malformed endpoint. Also a ``ValueError``."""


# -- transport: the request may never have reached a server -----------------
class TransportError(FlinError):
    """The client could not get an answer from the cluster."""


class ConnectionFailed(TransportError):
    """The endpoint could not be reached."""


class Timeout(TransportError):
    """No reply came within the client's timeout. The request may or may not
    have been applied."""


class ProtocolError(TransportError):
    """A reply did not decode as a Flin message."""


# -- server: a reply came, and it says why the request failed ---------------
class ServerError(FlinError):
    """The cluster answered with an error. ``code`` is the wire code."""

    code = 0
    retryable = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError):
    """The request was malformed: unknown command, wrong types, too big."""

    code = 1


class TooLarge(BadRequest):
    """A key, value, batch or message exceeds a documented limit."""

    code = 2


class NotAnInteger(ServerError):
    """INCR/DECR on a value that is not a signed 64-bit decimal integer."""

    code = 3


class Overflow(ServerError):
    """INCR/DECR would leave the signed 64-bit range."""

    code = 4


class ShardUnavailable(ServerError):
    """The key's shard is dead, stopped, starting or unreachable. Retryable:
    the request was not applied."""

    code = 5
    retryable = True


class OutcomeUnknown(ShardUnavailable):
    """The shard failed while the request was in flight: it may or may not
    have been applied."""

    code = 6


class Overloaded(ServerError):
    """The shard's queue is full; the request was not applied. Retry later."""

    code = 7
    retryable = True


class StorageError(ServerError):
    """The storage engine failed (disk full, I/O error, corruption). Writes in
    the failed batch were not acknowledged."""

    code = 8


class ShuttingDown(ServerError):
    """The cluster is stopping and takes no new requests."""

    code = 9
    retryable = True


class Moved(ShardUnavailable):
    """The shard does not own the key at its epoch (a reshard moved it, or is
    moving it): not applied. The router re-routes it; a caller that sees it
    may resend."""

    code = 11


class InternalError(ServerError):
    """A bug: the server caught an unexpected exception. It stays up."""

    code = 10


_BY_CODE: dict[int, type[ServerError]] = {
    cls.code: cls
    for cls in (
        BadRequest, TooLarge, NotAnInteger, Overflow, ShardUnavailable,
        OutcomeUnknown, Overloaded, StorageError, ShuttingDown, InternalError, Moved,
    )
}


def error_for_code(code: int, message: str) -> ServerError:
    """The exception instance for a wire error code (unknown codes map to
    ``ServerError`` with the code kept)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = ServerError(message)
        err.code = code
        return err
    return cls(message)
