"""RESP replies, as bytes: RESP2 by default, RESP3 after ``HELLO 3`` (``proto``
is 2 or 3 wherever it matters: nil, maps, verbatim text), and Flin's errors
as Redis-style error lines (``ERRORS``: the table README's "Use it from
Redis tools" shows)."""
from __future__ import annotations

from typing import Any

from ... import errors
from ...protocol import ErrorReply

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NIL2, NIL3 = b"$-1\r\n", b"_\r\n"
ZERO, ONE = b":0\r\n", b":1\r\n"
EMPTY_ARRAY = b"*0\r\n"

# Flin's error code -> the prefix of the RESP error line, and what it tells a caller
ERRORS: dict[int, str] = {
    errors.BadRequest.code: "ERR",              # malformed: do not retry
    errors.TooLarge.code: "ERR",                # past a documented limit: do not retry
    errors.NotAnInteger.code: "ERR",            # "value is not an integer or out of range"
    errors.Overflow.code: "ERR",                # "increment or decrement would overflow"
    errors.ShardUnavailable.code: "TRYAGAIN",   # not applied: retry
    errors.Moved.code: "TRYAGAIN",              # not applied: a reshard moved it; retry
    errors.OutcomeUnknown.code: "UNCERTAIN",    # may have been applied: retry only if idempotent
    errors.Overloaded.code: "BUSY",             # not applied: retry after a pause
    errors.StorageError.code: "MISCONF",        # the disk failed: not acknowledged
    errors.ShuttingDown.code: "TRYAGAIN",       # not applied: retry (another router, or later)
    errors.InternalError.code: "ERR",           # a bug; the server stays up
}
_WORDING = {
    errors.NotAnInteger.code: "value is not an integer or out of range",
    errors.Overflow.code: "increment or decrement would overflow",
}


def nil(proto: int) -> bytes:
    return NIL3 if proto == 3 else NIL2


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def integer(n: int) -> bytes:
    return b":%d\r\n" % n


def simple(text: str) -> bytes:
    return b"+%s\r\n" % _line(text)


def error(text: str) -> bytes:
    """An error line; ``text`` starts with its prefix (``ERR ...``)."""
    return b"-%s\r\n" % _line(text)


def _line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def flin_error(err: ErrorReply) -> bytes:
    """A Flin error result as the RESP error line of ``ERRORS``."""
    prefix = ERRORS.get(err.code, "ERR")
    return error("%s %s" % (prefix, _WORDING.get(err.code, err.message)))


def value_or_nil(v: Any, proto: int) -> bytes:
    if v is None:
        return NIL3 if proto == 3 else NIL2
    return b"$%d\r\n%s\r\n" % (len(v), v)


def array(items: list[bytes]) -> bytes:
    """An array of already encoded items."""
    return b"*%d\r\n%s" % (len(items), b"".join(items))


def bulks(values: list, proto: int) -> bytes:
    """An array of bulk strings (nil for None)."""
    nil_ = NIL3 if proto == 3 else NIL2
    return b"*%d\r\n%s" % (len(values), b"".join(
        nil_ if v is None else b"$%d\r\n%s\r\n" % (len(v), v) for v in values))


def encode(value: Any, proto: int) -> bytes:
    """Any reply built of None, bool, int, float, str/bytes (bulk), list and
    dict (a map in RESP3, a flat array in RESP2)."""
    t = type(value)
    if value is None:
        return nil(proto)
    if t is bool:
        if proto == 3:
            return b"#t\r\n" if value else b"#f\r\n"
        return ONE if value else ZERO
    if t is int:
        return integer(value)
    if t is bytes:
        return bulk(value)
    if t is str:
        return bulk(value.encode())
    if t is float:
        return b",%r\r\n" % value if proto == 3 else bulk(repr(value).encode())
    if t is list or t is tuple:
        return array([encode(v, proto) for v in value])
    if t is dict:
        if proto == 3:
            return b"%%%d\r\n%s" % (len(value), b"".join(
                encode(k, proto) + encode(v, proto) for k, v in value.items()))
        return array([encode(x, proto) for kv in value.items() for x in kv])
    raise TypeError("no RESP form for %s" % t.__name__)


def text(body: str, proto: int) -> bytes:
    """A text reply (INFO): a bulk string, or RESP3's verbatim ``txt``."""
    data = body.encode()
    if proto == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(data) + 4, data)
    return bulk(data)
