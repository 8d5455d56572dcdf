"""The Unix-socket link between a router and a shard worker: each message is
a 4-byte little-endian length and one msgpack frame (``protocol``). Part of
the shared floor: the router (``router.links``) and the worker
(``shardworker.link``) both import it.
"""
from __future__ import annotations

import struct
from typing import Any

LINK_HEADER = struct.Struct("<I")   # each frame on the link: 4-byte little-endian length, then it
MAX_LINK_FRAME = (1 << 32) - 1      # what the 4-byte length can say
BIG_FRAME = 1 << 20                 # a frame this big is read into a buffer of its own size
_CHUNK = 1 << 20                    # bytes asked of a socket at a time


def link_header(n: int) -> bytes:
    """The length prefix of an ``n``-byte frame; ``ValueError`` past 4 GiB."""
    if not 0 <= n <= MAX_LINK_FRAME:
        raise ValueError("a link frame of %d bytes: 4 GiB or more cannot be framed" % n)
    return LINK_HEADER.pack(n)


def link_frame(payload: bytes) -> bytes:
    """One frame as the Unix-socket link carries it."""
    return link_header(len(payload)) + payload


def link_frames(buf: bytearray) -> list[bytes]:
    """Complete link frames at the front of ``buf`` (removed from it); a
    partial frame stays for the next read."""
    out = []
    pos, end = 0, len(buf)
    unpack = LINK_HEADER.unpack_from
    while end - pos >= 4:
        n = unpack(buf, pos)[0]
        if end - pos - 4 < n:
            break
        out.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    if pos:
        del buf[:pos]
    return out


class LinkReader:
    """The frames of one link, from what its stream socket gives. Small
    frames gather in one buffer; a frame of ``BIG_FRAME`` or more is read
    straight into a buffer of its size (``big``: no regrowth, no copy out),
    and comes out as that ``bytearray``."""

    __slots__ = ("buf", "big", "view", "got")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.big: bytearray | None = None   # the big frame being read
        self.view: memoryview | None = None
        self.got = 0                        # bytes of it read so far

    def read(self, sock: Any) -> int:
        """One ``recv`` from ``sock``: bytes read, 0 at end of stream. Raises
        what ``recv`` raises (``BlockingIOError`` on a non-blocking socket)."""
        if self.view is not None:
            n: int = sock.recv_into(self.view[self.got:])
            self.got += n
            return n
        data = sock.recv(_CHUNK)
        self.buf += data
        return len(data)

    def frames(self) -> list[Any]:
        """The frames completed so far (removed)."""
        if self.big is not None:
            if self.got < len(self.big):
                return []
            out: list[Any] = [self.big]
            self.big = self.view = None
            return out
        out = link_frames(self.buf)
        buf = self.buf
        if len(buf) >= 4:
            n = LINK_HEADER.unpack_from(buf, 0)[0]
            if n >= BIG_FRAME:                # read the rest in place
                self.big = bytearray(n)
                self.got = len(buf) - 4
                self.big[:self.got] = memoryview(buf)[4:]
                self.view = memoryview(self.big)
                self.buf = bytearray()
        return out
