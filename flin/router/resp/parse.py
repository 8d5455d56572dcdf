"""Reading RESP requests off a connection, bounded against hostile input.

Clients send each command as a multibulk array of bulk strings
(``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``) or, from a terminal, as an
inline line (``PING\\r\\n``). ``Parser.feed(data)`` returns the commands
completed so far, each a list of ``bytes``.

Two paths:

- the fast one, ``hiredis.Reader`` (the C parser redis-py uses), for data
  read at a command boundary: whole pipelines, the common case, are parsed
  in C. It is taken only when it is exact: the data starts with ``*``, has
  no array header of 100,000 or more (hiredis allocates an array's list
  when it reads the header) and no line that starts with ``+``, ``=`` or
  ``(`` (hiredis gives those as bytes, as it does bulk strings); every
  command is an array of bulk strings; and their encoded sizes add up to
  the whole of the data, so no command was left half-read (hiredis keeps a
  half-read array header or argument to itself, ``has_data()`` false).
- the careful one, in Python, for everything else, from the start of the
  data: a command split over reads, inline commands, anything the fast
  path refused. It checks each header as soon as it is read, so that a bulk
  length over ``MAX_VALUE`` or an argument count over ``MAX_ARGS`` is
  refused before any of its bytes are buffered, and back at a boundary it
  hands over to the fast path again.

A refusal raises ``RespError`` with Redis's wording; the connection
answers it and closes, as Redis does. What one connection buffers is at
most one command (``MAX_COMMAND`` bytes) plus what one read brings.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import hiredis

from ...protocol import MAX_ITEMS, MAX_MESSAGE, MAX_VALUE

MAX_ARGS = 2 * MAX_ITEMS + 1       # MSET of MAX_ITEMS pairs, with its name
MAX_COMMAND = MAX_MESSAGE          # bytes of one command's arguments together
MAX_INLINE = 64 * 1024             # an inline line (Redis's PROTO_INLINE_MAX_SIZE)
_HEADER = 32                       # a header line longer than this is garbage
UNAUTH_ARGS, UNAUTH_BULK = 10, 16384   # per command before AUTH (Redis's limits)


class RespError(Exception):
    """Input no request can be read from: the connection answers this and
    closes. ``commands`` are those completed before it, to be answered first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.commands: list = []


def encoded_size(cmd: list) -> int:
    """Bytes of ``cmd`` as a canonical multibulk (what hiredis consumed for it)."""
    n = 3 + len(str(len(cmd)))
    for a in cmd:
        la = len(a)
        n += la + 5 + len(str(la))
    return n


class Parser:
    """The requests of one connection, from the bytes it sends."""

    __slots__ = ("reader", "slow", "guarded")

    def __init__(self, guarded: Callable[[], bool] | None = None) -> None:
        self.reader: Any = hiredis.Reader()
        self.slow: _Slow | None = None      # set between a split command and the next boundary
        self.guarded = guarded              # while it says so: the unauthenticated limits

    def feed(self, data: bytes) -> list:
        """The commands ``data`` completes (``[]`` if none yet); raises ``RespError``."""
        if self.slow is not None or data[:1] != b"*" or _BIG_ARRAY.search(data) is not None \
                or (self.guarded is not None and self.guarded()) \
                or ((b"+" in data or b"=" in data or b"(" in data)
                    and _NOT_BULK.search(data) is not None):
            return self._careful(data)
        reader = self.reader
        reader.feed(data)
        out: list = []
        join = b"".join           # TypeError unless every argument is bytes (80 ns)
        try:
            while True:
                cmd = reader.gets()
                if cmd is False:
                    break
                if type(cmd) is not list or not cmd:
                    return self._careful(data)          # not a request: say why, slowly
                join(cmd)
                out.append(cmd)
        except (hiredis.ProtocolError, TypeError, MemoryError):
            return self._careful(data)
        if sum(map(encoded_size, out)) != len(data):  # a command left half-read
            return self._careful(data)
        return out

    @property
    def idle(self) -> bool:
        """At a command boundary, nothing buffered."""
        return self.slow is None

    def _careful(self, data: bytes) -> list:
        """``data`` through the careful path (from its start if it is at a boundary)."""
        if self.slow is None:
            self.reader = hiredis.Reader()              # nothing it half-read is kept
            self.slow = _Slow()
        out: list = []
        try:
            self.slow.feed(data, out, self.guarded is not None and self.guarded())
        except RespError as exc:
            exc.commands = out
            raise
        if self.slow.clean():
            self.slow = None
        return out


_BIG_ARRAY = re.compile(rb"\*[0-9]{6}")         # an array header of 100,000 or more
_NOT_BULK = re.compile(rb"\n[+=(]")             # a line hiredis reads as bytes but is no bulk


class _Slow:
    """The careful parser: one command at a time, each header checked as read."""

    __slots__ = ("buf", "pos", "args", "want", "need", "size", "strict")

    def __init__(self) -> None:
        self.strict = False             # Redis's limits before AUTH
        self.buf = bytearray()
        self.pos = 0
        self.args: list | None = None   # the command being read
        self.want = 0                   # its arguments still to come
        self.need = -1                  # bytes of the bulk being read (-1: at a header)
        self.size = 0                   # its argument bytes so far

    def clean(self) -> bool:
        return self.args is None and self.pos >= len(self.buf)

    def feed(self, data: bytes, out: list, strict: bool = False) -> None:
        """Parse on; ``strict``: Redis's limits before AUTH (``UNAUTH_ARGS``,
        ``UNAUTH_BULK``), for the commands of this read (an AUTH among them
        takes effect after the read, so a big command pipelined right behind
        it is refused: clients send AUTH and wait, as redis-py does)."""
        self.strict = strict
        buf = self.buf
        if self.pos:
            del buf[:self.pos]
            self.pos = 0
        buf += data
        while True:
            if self.args is None:
                if not self._start(out):
                    break
                continue
            if not self._argument():
                break
            if not self.want:
                out.append(self.args)
                self.args = None
        if self.pos == len(buf):
            buf.clear()
            self.pos = 0

    def _line(self, limit: int) -> bytes | None:
        buf = self.buf
        end = buf.find(b"\n", self.pos, self.pos + limit + 2)
        if end < 0:
            if len(buf) - self.pos > limit:
                return None if limit == MAX_INLINE else b"\xff"   # too long: garbage
            return b""
        line = bytes(buf[self.pos:end])
        self.pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _start(self, out: list) -> bool:
        """At a boundary: a multibulk header, or an inline command."""
        buf, pos = self.buf, self.pos
        if pos >= len(buf):
            return False
        if buf[pos] != 0x2A:                                   # b"*"
            start = pos
            line = self._line(MAX_INLINE)
            if line is None:
                raise RespError("Protocol error: too big inline request")
            if not line and self.pos == start:
                return False                                   # the line is not complete yet
            args = inline_args(line)
            if args:
                out.append(args)
            return True
        if self.buf.find(b"\n", pos, pos + _HEADER) < 0:
            if len(buf) - pos >= _HEADER:
                raise RespError("Protocol error: invalid multibulk length")
            return False
        line = self._line(_HEADER)
        assert line
        n = _number(line[1:])
        if self.strict and n is not None and n > UNAUTH_ARGS:
            raise RespError("Protocol error: unauthenticated multibulk length")
        if n is None or n > MAX_ARGS:
            raise RespError("Protocol error: invalid multibulk length")
        if n <= 0:
            return True                                        # Redis skips an empty multibulk
        self.args, self.want, self.need, self.size = [], n, -1, 0
        return True

    def _argument(self) -> bool:
        """Read (part of) the next argument; True when one completed."""
        buf = self.buf
        if self.need < 0:
            if self.pos >= len(buf):
                return False
            if buf.find(b"\n", self.pos, self.pos + _HEADER) < 0:
                if len(buf) - self.pos >= _HEADER:
                    raise RespError("Protocol error: invalid bulk length")
                return False
            if buf[self.pos] != 0x24:                          # b"$"
                raise RespError("Protocol error: expected '$', got '%s'" % chr(buf[self.pos]))
            line = self._line(_HEADER)
            assert line is not None
            n = _number(line[1:])
            if self.strict and n is not None and n > UNAUTH_BULK:
                raise RespError("Protocol error: unauthenticated bulk length")
            if n is None or n < 0 or n > MAX_VALUE:
                raise RespError("Protocol error: invalid bulk length")
            self.size += n
            if self.size > MAX_COMMAND:
                raise RespError("Protocol error: a command of more than %d bytes" % MAX_COMMAND)
            self.need = n
        if len(buf) - self.pos < self.need + 2:
            return False
        end = self.pos + self.need
        assert self.args is not None
        self.args.append(bytes(buf[self.pos:end]))
        self.pos = end + 2
        self.need = -1
        self.want -= 1
        return True


def _number(text: bytes) -> int | None:
    """A header's decimal number (negative: -1), as strictly as Redis's
    ``string2ll``: no sign but ``-``, no leading zero; None if it is not one."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or len(digits) > 18 or (digits[:1] == b"0" and text != b"0"):
        return None
    return -1 if text[:1] == b"-" else int(digits)


def inline_args(line: bytes) -> list:
    """An inline command's arguments, split as Redis's ``sdssplitargs`` does:
    on spaces, with "double quotes" (escapes \\n \\r \\t \\b \\a \\\\ \\" \\xHH)
    and 'single quotes' (only \\' escaped). Raises ``RespError`` for
    unbalanced quotes."""
    args: list = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\r\n\v\f":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if i >= n:
                if inq or insq:
                    raise RespError("Protocol error: unbalanced quotes in request")
                break
            c = line[i]
            if inq:
                if c == 0x5C and i + 3 < n and line[i + 1] == 0x78 and _hex(line[i + 2:i + 4]):
                    cur.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    cur.append({0x6E: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7}.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise RespError("Protocol error: unbalanced quotes in request")
                    inq = False
                    i += 1
                    break
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise RespError("Protocol error: unbalanced quotes in request")
                    insq = False
                    i += 1
                    break
                else:
                    cur.append(c)
            elif c in b" \t\r\n\v\f":
                break
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                cur.append(c)
            i += 1
        args.append(bytes(cur))


def _hex(two: bytes) -> bool:
    return len(two) == 2 and all(c in b"0123456789abcdefABCDEF" for c in two)
