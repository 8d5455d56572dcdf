"""What the shard's op handlers share: value encoding and error results."""
from __future__ import annotations

from . import errors
from .protocol import ErrorReply

_PLAIN = b"\x00"                       # header of a value without expiry
_EXPIRING = 1                           # header byte of a value with an 8-byte expiry
_MISSING = object()

ERROR_COUNTS: dict[int, int] = {}      # error code -> errors answered by this process's shard


def _err(cls: type[errors.ServerError], msg: str) -> ErrorReply:
    ERROR_COUNTS[cls.code] = ERROR_COUNTS.get(cls.code, 0) + 1
    return ErrorReply(cls.code, msg)


def value_of(raw: bytes) -> bytes:
    """The user's value inside a stored value."""
    return raw[1:] if raw[0] == 0 else raw[9:]
