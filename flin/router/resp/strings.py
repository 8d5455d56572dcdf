"""The string commands: GET, SET and its kin, MGET/MSET, DEL, EXISTS,
counters, expiry. Each ``c_NAME(session, args)`` returns its reply (an
error of arity or syntax) or a ``Plan``: the Flin commands and ``finish``."""
from __future__ import annotations

from ...protocol import (
    DEL, EXISTS, EXPIRE, GET, GET_OLD, GETDEL, INCR, INT64_MIN, KEEP_TTL, MAX_ITEMS, MAX_TTL_MS,
    MGET, MSET, NX, PERSIST, SET, TTL, XX,
)
from . import reply as R
from .common import (
    NOT_INT, SYNTAX, Plan, Session, arity, fin_bool, fin_count, fin_int, fin_mget, fin_ok,
    fin_ok_or_nil, fin_strlen, fin_ttl_s, fin_type, fin_value, now_ms, to_int,
)


def c_get(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("get")
    return [[GET, a[1]]], fin_value


def c_strlen(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("strlen")
    return [[GET, a[1]]], fin_strlen


def c_type(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("type")
    return [[EXISTS, a[1]]], fin_type


def c_set(s: Session, a: list) -> bytes | Plan:
    if len(a) < 3:
        return arity("set")
    if len(a) == 3:
        return [[SET, a[1], a[2], None, 0]], fin_ok
    flags, ttl, seen = 0, None, b""
    i = 3
    while i < len(a):
        opt = a[i].upper()
        if opt == b"NX" and not flags & XX:
            flags |= NX
        elif opt == b"XX" and not flags & NX:
            flags |= XX
        elif opt == b"GET":
            flags |= GET_OLD
        elif opt == b"KEEPTTL" and seen in (b"", opt):     # (again: fine, as in Redis)
            flags |= KEEP_TTL
            seen = opt
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and seen in (b"", opt) and i + 1 < len(a):
            seen = opt
            i += 1
            n = to_int(a[i])
            if n is None:
                return R.error(NOT_INT)
            ttl = _ttl_of(opt, n)
            if ttl is None:
                return R.error("ERR invalid expire time in 'set' command")
        else:
            return SYNTAX
        i += 1
    if ttl == 0 and not flags & (NX | XX):   # EXAT/PXAT past: set and gone at once
        return ([[GETDEL, a[1]]], fin_value) if flags & GET_OLD else ([[DEL, [a[1]]]], fin_ok)
    cmd = [SET, a[1], a[2], ttl or (1 if ttl == 0 else None), flags]
    if flags & GET_OLD:
        return [cmd], fin_value
    return [cmd], fin_ok_or_nil if flags & (NX | XX) else fin_ok


def c_setnx(s: Session, a: list) -> bytes | Plan:
    if len(a) != 3:
        return arity("setnx")
    return [[SET, a[1], a[2], None, NX]], fin_bool


def _setex(a: list, name: str, unit: bytes) -> bytes | Plan:
    if len(a) != 4:
        return arity(name)
    n = to_int(a[2])
    if n is None:
        return R.error(NOT_INT)
    ttl = _ttl_of(unit, n)
    if ttl is None or n <= 0:
        return R.error("ERR invalid expire time in '%s' command" % name)
    return [[SET, a[1], a[3], ttl, 0]], fin_ok


def c_setex(s: Session, a: list) -> bytes | Plan:
    return _setex(a, "setex", b"EX")


def c_psetex(s: Session, a: list) -> bytes | Plan:
    return _setex(a, "psetex", b"PX")


def c_getset(s: Session, a: list) -> bytes | Plan:
    if len(a) != 3:
        return arity("getset")
    return [[SET, a[1], a[2], None, GET_OLD]], fin_value


def c_getdel(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("getdel")
    return [[GETDEL, a[1]]], fin_value


def c_mget(s: Session, a: list) -> bytes | Plan:
    if len(a) < 2:
        return arity("mget")
    return [[MGET, a[1:]]], fin_mget


def c_mset(s: Session, a: list) -> bytes | Plan:
    if len(a) < 3 or len(a) % 2 == 0:
        return arity("mset")
    return [[MSET, a[1:], None]], fin_ok


def c_del(s: Session, a: list) -> bytes | Plan:
    if len(a) < 2:
        return arity("del")
    return [[DEL, a[1:]]], fin_int


def c_unlink(s: Session, a: list) -> bytes | Plan:
    if len(a) < 2:
        return arity("unlink")
    return [[DEL, a[1:]]], fin_int


def c_exists(s: Session, a: list) -> bytes | Plan:
    if len(a) < 2:
        return arity("exists")
    if len(a) > MAX_ITEMS + 1:
        return R.error("ERR more than %d keys" % MAX_ITEMS)
    return [[EXISTS, k] for k in a[1:]], fin_count


# -- counters --------------------------------------------------------------
def _incr(a: list, name: str, n: int, by: bytes | None) -> bytes | Plan:
    if by is not None:
        v = to_int(by)
        if v is None:
            return R.error(NOT_INT)
        if n < 0:
            if v == INT64_MIN:
                return R.error("ERR decrement would overflow")
            v = -v
        n = v
    return [[INCR, a[1], n, None]], fin_int


def c_incr(s: Session, a: list) -> bytes | Plan:
    return _incr(a, "incr", 1, None) if len(a) == 2 else arity("incr")


def c_decr(s: Session, a: list) -> bytes | Plan:
    return _incr(a, "decr", -1, None) if len(a) == 2 else arity("decr")


def c_incrby(s: Session, a: list) -> bytes | Plan:
    return _incr(a, "incrby", 1, a[2]) if len(a) == 3 else arity("incrby")


def c_decrby(s: Session, a: list) -> bytes | Plan:
    return _incr(a, "decrby", -1, a[2]) if len(a) == 3 else arity("decrby")


# -- expiry ----------------------------------------------------------------
def _expire(a: list, name: str, unit: bytes) -> bytes | Plan:
    if len(a) < 3:
        return arity(name)
    if len(a) > 3:
        opt = a[3].upper()
        if opt in (b"NX", b"XX", b"GT", b"LT"):
            return R.error("ERR %s's NX, XX, GT and LT options are not supported by Flin"
                           % name.upper())
        return R.error("ERR Unsupported option %s" % a[3].decode("utf-8", "replace"))
    n = to_int(a[2])
    if n is None:
        return R.error(NOT_INT)
    ttl = _ttl_of(unit, n, allow_past=True)
    if ttl is None:
        return R.error("ERR invalid expire time in '%s' command" % name)
    return [[EXPIRE, a[1], ttl]], fin_bool


def c_expire(s: Session, a: list) -> bytes | Plan:
    return _expire(a, "expire", b"EX")


def c_pexpire(s: Session, a: list) -> bytes | Plan:
    return _expire(a, "pexpire", b"PX")


def c_expireat(s: Session, a: list) -> bytes | Plan:
    return _expire(a, "expireat", b"EXAT")


def c_pexpireat(s: Session, a: list) -> bytes | Plan:
    return _expire(a, "pexpireat", b"PXAT")


def c_ttl(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("ttl")
    return [[TTL, a[1]]], fin_ttl_s


def c_pttl(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("pttl")
    return [[TTL, a[1]]], fin_int


def c_persist(s: Session, a: list) -> bytes | Plan:
    if len(a) != 2:
        return arity("persist")
    return [[PERSIST, a[1]]], fin_bool


# -- the keyspace ------------------------------------------------------------


def _ttl_of(unit: bytes, n: int, allow_past: bool = False) -> int | None:
    """ms from now for EX/PX seconds or ms, EXAT/PXAT an absolute time; None
    if not valid (SET: not positive; past ``MAX_TTL_MS``). An absolute time
    in the past is 0: EXPIREAT deletes the key, SET sets it gone (with NX or
    XX: for 1 ms)."""
    if unit in (b"EX", b"PX"):
        ms = n * 1000 if unit == b"EX" else n
        if ms > MAX_TTL_MS or ms < INT64_MIN or (ms <= 0 and not allow_past):
            return None                   # (below INT64_MIN: Redis's overflow check too)
        return max(ms, 0)                 # in the past: EXPIRE deletes
    at = n * 1000 if unit == b"EXAT" else n
    if n <= 0 and not allow_past:
        return None
    ms = at - now_ms()
    if ms > MAX_TTL_MS:
        return None
    return ms if ms > 0 else 0
