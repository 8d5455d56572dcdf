"""What the RESP command modules share: a connection's ``Session``, strict
integers as Redis reads them, the arity error, and the ``finish`` helpers
that turn Flin results into replies."""
from __future__ import annotations

import time
from typing import Any, Callable

from ...protocol import INT64_MAX, INT64_MIN, ErrorReply
from ..planner import first_error
from . import reply as R

Finish = Callable[[list, int], bytes]
Plan = tuple[list, Finish]
NOT_INT = "ERR value is not an integer or out of range"
SYNTAX = R.error("ERR syntax error")


class Session:
    """One connection's state: its id, name, protocol, whether it authenticated."""

    __slots__ = ("id", "name", "proto", "authed", "lib", "addr", "created", "quit", "multi",
                 "readonly")

    def __init__(self, cid: int, addr: str, authed: bool) -> None:
        self.id, self.addr, self.authed = cid, addr, authed
        self.name = b""
        self.proto = 2
        self.lib: dict[str, bytes] = {}
        self.created = time.time()
        self.quit = False                # close after this reply (QUIT)
        self.multi = False               # after a (refused) MULTI, until EXEC or DISCARD
        self.readonly = False            # READONLY: reads may come from any copy (replicas)


def arity(name: str) -> bytes:
    return R.error("ERR wrong number of arguments for '%s' command" % name)


def to_int(b: bytes) -> int | None:
    """A strict signed 64-bit decimal, as Redis's ``string2ll``; None if not one."""
    if not b or len(b) > 20:
        return None
    digits = b[1:] if b[:1] == b"-" else b
    if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1) or b == b"-0":
        return None
    n = int(b)
    return n if INT64_MIN <= n <= INT64_MAX else None


def now_ms() -> int:
    return int(time.time() * 1000)


# -- finishing: Flin results -> RESP --------------------------------------------
def one(conv: Callable[[Any, int], bytes]) -> Finish:
    def finish(results: list, proto: int) -> bytes:
        r = results[0]
        if type(r) is ErrorReply:
            return R.flin_error(r)
        return conv(r, proto)
    return finish


fin_value = one(R.value_or_nil)
fin_int = one(lambda r, p: R.integer(r))
fin_bool = one(lambda r, p: R.ONE if r else R.ZERO)
fin_ok = one(lambda r, p: R.OK)
fin_ok_or_nil = one(lambda r, p: R.OK if r else R.nil(p))   # SET NX/XX
fin_strlen = one(lambda r, p: R.integer(0 if r is None else len(r)))
fin_type = one(lambda r, p: b"+string\r\n" if r else b"+none\r\n")
fin_ttl_s = one(lambda r, p: R.integer(r if r < 0 else (r + 500) // 1000))


def fin_mget(results: list, proto: int) -> bytes:
    r = results[0]
    return R.flin_error(r) if type(r) is ErrorReply else R.bulks(r, proto)


def fin_count(results: list, proto: int) -> bytes:
    err = first_error(results)
    return R.flin_error(err) if err else R.integer(sum(1 for r in results if r))
