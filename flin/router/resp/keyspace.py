"""SCAN and KEYS over Flin's prefix scans, with Redis's glob patterns.

A Redis cursor is a number; a Flin scan resumes after a key. So a router
keeps each cursor it hands out (``CURSORS`` of them, the oldest forgotten:
an unknown cursor is an error, never a scan restarted silently). A
pattern's literal prefix (the bytes before its first ``*?[``) is the Flin
prefix; a pattern that is that prefix and one ``*`` needs no more, others
filter each page (COUNT keys looked at, as Redis's COUNT: a page may hold
fewer matches). KEYS looks at most ``KEYS_LIMIT`` keys under the prefix and
refuses past that.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Callable

from ...protocol import MAX_SCAN_LIMIT, SCAN, ErrorReply
from . import reply as R
from .common import NOT_INT, SYNTAX, Plan, Session, arity, to_int

KEYS_LIMIT = MAX_SCAN_LIMIT    # keys KEYS may look at under its pattern's literal prefix
SCAN_DEFAULT = 10              # keys a SCAN looks at without COUNT (Redis's default)
CURSORS = 100_000              # SCAN cursors kept per router (the oldest are forgotten)


# Redis's stringmatchlen
def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every key matching ``pattern`` starts with."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in b"*?[":
            break
        if c == 0x5C:                             # backslash: the next byte as it is
            if i + 1 >= len(pattern):
                break
            i += 1
            c = pattern[i]
        out.append(c)
        i += 1
    return bytes(out)


def glob_matcher(pattern: bytes) -> Callable[[bytes], bool] | None:
    """A test for keys matching ``pattern``; None when the literal prefix
    followed by one ``*`` says it all (a Flin prefix scan is the match)."""
    if b"\\" not in pattern and pattern == literal_prefix(pattern) + b"*":
        return None
    rx = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:                             # *
            rx += b".*"
        elif c == 0x3F:                           # ?
            rx += b"."
        elif c == 0x5B:                           # [class], [^class], ranges, escapes
            i, cls = _glob_class(pattern, i + 1)
            rx += cls
        elif c == 0x5C and i + 1 < n:             # \x: x itself
            i += 1
            rx += re.escape(pattern[i:i + 1])
        else:
            rx += re.escape(pattern[i:i + 1])
        i += 1
    compiled = re.compile(bytes(rx), re.DOTALL)
    return lambda key: compiled.fullmatch(key) is not None


def _glob_class(pattern: bytes, j: int) -> tuple[int, bytes]:
    """The regex of a ``[...]`` starting after its ``[``, and where it ends
    (its ``]``, or the end of the pattern, as Redis reads it)."""
    n = len(pattern)
    neg = j < n and pattern[j] == 0x5E
    if neg:
        j += 1
    items = bytearray()
    while j < n and pattern[j] != 0x5D:
        if pattern[j] == 0x5C and j + 1 < n:
            j += 1
            items += re.escape(pattern[j:j + 1])
        elif j + 2 < n and pattern[j + 1] == 0x2D:        # a-z; "a-]" too, as Redis reads it
            lo, hi = sorted((pattern[j], pattern[j + 2]))
            items += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
            j += 2
        else:
            items += re.escape(pattern[j:j + 1])
        j += 1
    if not items:
        return j, (b"[\\x00-\\xff]" if neg else b"(?!)")
    return j, (b"[^" if neg else b"[") + bytes(items) + b"]"


class Keyspace:
    """SCAN's cursors, and the two commands."""

    def __init__(self) -> None:
        self.cursors: OrderedDict[int, tuple[bytes, bytes, Any]] = OrderedDict()
        self.next_cursor = 1

    def c_scan(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("scan")
        cursor = to_int(a[1])
        if cursor is None or cursor < 0:
            return R.error("ERR invalid cursor")
        pattern, count, kind = b"*", SCAN_DEFAULT, None
        i = 2
        while i < len(a):
            opt = a[i].upper()
            if i + 1 >= len(a):
                return SYNTAX
            if opt == b"MATCH":
                pattern = a[i + 1]
            elif opt == b"COUNT":
                c = to_int(a[i + 1])
                if c is None:
                    return R.error(NOT_INT)
                if c < 1:
                    return SYNTAX
                count = min(c, MAX_SCAN_LIMIT)
            elif opt == b"TYPE":
                kind = a[i + 1].lower()
            else:
                return SYNTAX
            i += 2
        if cursor == 0:
            prefix, after, match = literal_prefix(pattern), None, glob_matcher(pattern)
        else:
            saved = self.cursors.pop(cursor, None)
            if saved is None:
                return R.error("ERR unknown or expired SCAN cursor %d (a router keeps the "
                               "latest %d; start again from 0)" % (cursor, CURSORS))
            prefix, after, match = saved
        none = kind is not None and kind != b"string"

        def finish(results: list, proto: int) -> bytes:
            r = results[0]
            if type(r) is ErrorReply:
                return R.flin_error(r)
            keys, last = r
            nxt = b"0" if last is None else b"%d" % self._remember(prefix, last, match)
            if none:
                keys = []
            elif match is not None:
                keys = [k for k in keys if match(k)]
            return b"*2\r\n" + R.bulk(nxt) + R.bulks(keys, proto)
        return [[SCAN, prefix, after, count, False]], finish

    def _remember(self, prefix: bytes, last: bytes, match: Any) -> int:
        cid = self.next_cursor
        self.next_cursor += 1
        self.cursors[cid] = (prefix, last, match)
        if len(self.cursors) > CURSORS:
            self.cursors.popitem(last=False)
        return cid

    def c_keys(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("keys")
        prefix, match = literal_prefix(a[1]), glob_matcher(a[1])

        def finish(results: list, proto: int) -> bytes:
            r = results[0]
            if type(r) is ErrorReply:
                return R.flin_error(r)
            keys, last = r
            if last is not None:
                return R.error("ERR KEYS would look at more than %d keys under the prefix %r; "
                               "use SCAN" % (KEYS_LIMIT, prefix.decode("utf-8", "replace")))
            return R.bulks([k for k in keys if match(k)] if match else keys, proto)
        return [[SCAN, prefix, None, KEYS_LIMIT, False]], finish
