"""What each Redis command means in Flin: ``Commands.translate(session, args)``.

A command (its arguments as ``bytes``, the name first) becomes either its
reply at once (``bytes``: PING, ECHO, HELLO, errors of arity or syntax...)
or a ``Plan``: the Flin commands to route (``flin.protocol``'s, planned and
coalesced per shard like any client's) and ``finish(results, proto)``, which
turns their results into the RESP reply. Pure of I/O, as the planner is;
the replies and the argument checks keep Redis 7.0's wording, so that a
table-driven test can compare Flin with a ``redis-server``.

Refused, with why: commands whose Redis meaning Flin cannot keep
(transactions, scripts, atomic multi-key changes across shards, other data
types, pub/sub); see ``REFUSED``.
"""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any, Callable

from ... import __version__
from ...protocol import (
    DEL, EXISTS, EXPIRE, GET, GET_OLD, GETDEL, INCR, INT64_MAX, INT64_MIN, KEEP_TTL, MAX_ITEMS,
    MAX_SCAN_LIMIT, MAX_TTL_MS, MGET, MSET, NX, PERSIST, SCAN, SET, STATS, TTL, XX, ErrorReply,
)
from . import reply as R

Finish = Callable[[list, int], bytes]
Plan = tuple[list, Finish]
REDIS_VERSION = "7.0.0"        # the Redis whose commands Flin answers like (INFO, HELLO)
KEYS_LIMIT = MAX_SCAN_LIMIT    # keys KEYS may look at under its pattern's literal prefix
SCAN_DEFAULT = 10              # keys a SCAN looks at without COUNT (Redis's default)
CURSORS = 100_000              # SCAN cursors kept per router (the oldest are forgotten)

_NOT_INT = "ERR value is not an integer or out of range"
_SYNTAX = R.error("ERR syntax error")


class Session:
    """One connection's state: its id, name, protocol, whether it authenticated."""

    __slots__ = ("id", "name", "proto", "authed", "lib", "addr", "created", "quit")

    def __init__(self, cid: int, addr: str, authed: bool) -> None:
        self.id, self.addr, self.authed = cid, addr, authed
        self.name = b""
        self.proto = 2
        self.lib: dict[str, bytes] = {}
        self.created = time.time()
        self.quit = False                # close after this reply (QUIT)


def arity(name: str) -> bytes:
    return R.error("ERR wrong number of arguments for '%s' command" % name)


def _int(b: bytes) -> int | None:
    """A strict signed 64-bit decimal, as Redis's ``string2ll``; None if not one."""
    if not b or len(b) > 20:
        return None
    digits = b[1:] if b[:1] == b"-" else b
    if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1) or b == b"-0":
        return None
    n = int(b)
    return n if INT64_MIN <= n <= INT64_MAX else None


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- finishing: Flin results -> RESP --------------------------------------------
def _one(conv: Callable[[Any, int], bytes]) -> Finish:
    def finish(results: list, proto: int) -> bytes:
        r = results[0]
        if type(r) is ErrorReply:
            return R.flin_error(r)
        return conv(r, proto)
    return finish


def _first_error(results: list) -> ErrorReply | None:
    for r in results:
        if type(r) is ErrorReply:
            return r
    return None


_fin_value = _one(R.value_or_nil)
_fin_int = _one(lambda r, p: R.integer(r))
_fin_bool = _one(lambda r, p: R.ONE if r else R.ZERO)
_fin_ok = _one(lambda r, p: R.OK)
_fin_ok_or_nil = _one(lambda r, p: R.OK if r else R.nil(p))   # SET NX/XX
_fin_strlen = _one(lambda r, p: R.integer(0 if r is None else len(r)))
_fin_type = _one(lambda r, p: b"+string\r\n" if r else b"+none\r\n")
_fin_ttl_s = _one(lambda r, p: R.integer(r if r < 0 else (r + 500) // 1000))


def _fin_mget(results: list, proto: int) -> bytes:
    r = results[0]
    return R.flin_error(r) if type(r) is ErrorReply else R.bulks(r, proto)


def _fin_count(results: list, proto: int) -> bytes:
    err = _first_error(results)
    return R.flin_error(err) if err else R.integer(sum(1 for r in results if r))


# -- glob patterns (Redis's stringmatchlen) -----------------------------------------
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
        elif j + 2 < n and pattern[j + 1] == 0x2D and pattern[j + 2] != 0x5D:
            lo, hi = sorted((pattern[j], pattern[j + 2]))
            items += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
            j += 2
        else:
            items += re.escape(pattern[j:j + 1])
        j += 1
    if not items:
        return j, (b"[\\x00-\\xff]" if neg else b"(?!)")
    return j, (b"[^" if neg else b"[") + bytes(items) + b"]"


# -- the commands -----------------------------------------------------------------
# Known Redis commands that Flin refuses, and why (never half-done).
_ATOMIC = "Flin cannot run commands atomically together across shards"
REFUSED: dict[str, str] = {
    **{c: "%s: %s; send the commands without %s" % (c.upper(), _ATOMIC, c.upper())
       for c in ("multi", "exec", "discard", "watch", "unwatch")},
    **{c: "%s: Flin runs no scripts (%s)" % (c.upper(), _ATOMIC)
       for c in ("eval", "evalsha", "eval_ro", "evalsha_ro", "script", "function", "fcall",
                 "fcall_ro")},
    **{c: "%s: %s: keys live on different shards" % (c.upper(), _ATOMIC)
       for c in ("msetnx", "rename", "renamenx", "copy", "move", "smove", "lmove", "rpoplpush")},
    **{c: "%s: Flin keeps strings only" % c.upper()
       for c in ("hset", "hget", "hmset", "hmget", "hgetall", "hdel", "hincrby", "hkeys", "hlen",
                 "lpush", "rpush", "lpop", "rpop", "lrange", "llen", "sadd", "srem", "smembers",
                 "scard", "sismember", "spop", "zadd", "zrange", "zrem", "zscore", "zcard",
                 "zincrby", "xadd", "xrange", "xread", "pfadd", "pfcount", "setbit", "getbit",
                 "bitcount", "geoadd")},
    **{c: "%s: Flin has no pub/sub" % c.upper()
       for c in ("subscribe", "psubscribe", "publish", "unsubscribe", "punsubscribe", "ssubscribe")},
    "flushall": "FLUSHALL: not supported: delete keys with DEL, or stop the cluster and "
                "remove its data folder",
    "flushdb": "FLUSHDB: not supported: delete keys with DEL, or stop the cluster and "
               "remove its data folder",
    "save": "SAVE: Flin writes every acknowledged write to LevelDB; use `flin backup`",
    "bgsave": "BGSAVE: Flin writes every acknowledged write to LevelDB; use `flin backup`",
    "shutdown": "SHUTDOWN: stop the cluster with `flin stop`",
    "replicaof": "REPLICAOF: not supported", "slaveof": "SLAVEOF: not supported",
    "cluster": "CLUSTER: this is one Flin cluster; clients need no slot map",
    "readonly": "READONLY: Flin has no replicas yet",
}


class Commands:
    """Translates Redis commands; ``figures()`` gives INFO the router's own
    (``flin.router.stats``), ``password`` is what AUTH must give (None: none)."""

    def __init__(self, figures: Callable[[], dict], password: bytes | None,
                 port: int, timeout: float, sync: bool = False) -> None:
        self.figures, self.password, self.port, self.timeout = figures, password, port, timeout
        self.sync = sync
        self.cursors: OrderedDict[int, tuple[bytes, bytes, Any]] = OrderedDict()
        self.next_cursor = 1
        self.table: dict[bytes, Callable[[Session, list], Any]] = {}
        for name in dir(self):
            if name.startswith("c_"):
                self.table[name[2:].encode()] = getattr(self, name)
        self.names = sorted(n.decode() for n in self.table)

    def translate(self, s: Session, args: list) -> bytes | Plan:
        """Reply bytes, or ``(flin commands, finish)``."""
        name = args[0]
        handler = self.table.get(name)
        if handler is None:
            lower = name.lower()
            handler = self.table.get(lower)
            if handler is None:
                return self._unknown(s, args, lower.decode("utf-8", "replace"))
        if not s.authed and name.lower() not in (b"auth", b"hello", b"quit"):
            return R.error("NOAUTH Authentication required.")
        return handler(s, args)  # type: ignore[no-any-return]

    def _unknown(self, s: Session, args: list, lower: str) -> bytes:
        if not s.authed:
            return R.error("NOAUTH Authentication required.")
        why = REFUSED.get(lower)
        if why is not None:
            return R.error("ERR " + why)
        shown = "".join("'%s' " % a[:128].decode("utf-8", "replace") for a in args[1:20])
        return R.error("ERR unknown command '%s', with args beginning with: %s"
                       % (args[0][:128].decode("utf-8", "replace"), shown))

    # -- connection ------------------------------------------------------------
    def c_ping(self, s: Session, a: list) -> bytes:
        if len(a) == 1:
            return R.PONG
        if len(a) == 2:
            return R.bulk(a[1])
        return arity("ping")

    def c_echo(self, s: Session, a: list) -> bytes:
        return R.bulk(a[1]) if len(a) == 2 else arity("echo")

    def c_quit(self, s: Session, a: list) -> bytes:
        s.quit = True
        return R.OK

    def c_select(self, s: Session, a: list) -> bytes:
        if len(a) != 2:
            return arity("select")
        n = _int(a[1])
        if n is None:
            return R.error(_NOT_INT)
        return R.OK if n == 0 else R.error("ERR DB index is out of range")

    def c_auth(self, s: Session, a: list) -> bytes:
        if len(a) not in (2, 3):
            return arity("auth")
        if self.password is None:
            return R.error("ERR AUTH <password> called without any password configured for "
                           "the default user. Are you sure your configuration is correct?")
        return self._login(s, a[1] if len(a) == 3 else b"default", a[-1])

    def _login(self, s: Session, user: bytes, password: bytes) -> bytes:
        import hmac
        if user == b"default" and self.password is not None \
                and hmac.compare_digest(password, self.password):
            s.authed = True
            return R.OK
        return R.error("WRONGPASS invalid username-password pair or user is disabled.")

    def c_hello(self, s: Session, a: list) -> bytes:
        proto = s.proto
        if len(a) > 1:
            v = _int(a[1])
            if v is None:
                return R.error("ERR Protocol version is not an integer or out of range")
            if v not in (2, 3):
                return R.error("NOPROTO unsupported protocol version")
            proto = v
        i = 2
        while i < len(a):
            opt = a[i].lower()
            if opt == b"auth" and i + 2 < len(a):
                if self.password is None:
                    return R.error("ERR AUTH <password> called without any password configured "
                                   "for the default user. Are you sure your configuration is correct?")
                out = self._login(s, a[i + 1], a[i + 2])
                if out != R.OK:
                    return out
                i += 3
            elif opt == b"setname" and i + 1 < len(a):
                if not _name_ok(a[i + 1]):
                    return R.error("ERR Client names cannot contain spaces, newlines or special "
                                   "characters.")
                s.name = a[i + 1]
                i += 2
            else:
                return R.error("ERR Syntax error in HELLO option '%s'"
                               % a[i].decode("utf-8", "replace"))
        if not s.authed:
            return R.error("NOAUTH HELLO must be called with the client already authenticated, "
                           "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                           "authenticate the client and select the RESP protocol version at the "
                           "same time")
        s.proto = proto
        return R.encode({"server": "redis", "version": REDIS_VERSION, "proto": proto,
                         "id": s.id, "mode": "standalone", "role": "master", "modules": [],
                         "flin_version": __version__}, proto)

    def c_client(self, s: Session, a: list) -> bytes:
        if len(a) < 2:
            return arity("client")
        sub = a[1].lower()
        if sub == b"setname":
            if len(a) != 3:
                return arity("client|setname")
            if not _name_ok(a[2]):
                return R.error("ERR Client names cannot contain spaces, newlines or special "
                               "characters.")
            s.name = a[2]
            return R.OK
        if sub == b"getname":
            return arity("client|getname") if len(a) != 2 else \
                (R.bulk(s.name) if s.name else R.nil(s.proto))
        if sub == b"id":
            return arity("client|id") if len(a) != 2 else R.integer(s.id)
        if sub == b"setinfo":
            if len(a) != 4:
                return arity("client|setinfo")
            attr = a[2].lower()
            if attr not in (b"lib-name", b"lib-ver"):
                return R.error("ERR Unrecognized option '%s'" % a[2].decode("utf-8", "replace"))
            s.lib[attr.decode()] = a[3]
            return R.OK
        if sub == b"info":
            return R.bulk(self._client_line(s).encode())
        return R.error("ERR unknown subcommand '%s'. Try CLIENT HELP."
                       % a[1].decode("utf-8", "replace"))

    def _client_line(self, s: Session) -> str:
        return "id=%d addr=%s name=%s age=%d db=0 resp=%d lib-name=%s lib-ver=%s\n" % (
            s.id, s.addr, s.name.decode("utf-8", "replace"), time.time() - s.created, s.proto,
            s.lib.get("lib-name", b"").decode("utf-8", "replace"),
            s.lib.get("lib-ver", b"").decode("utf-8", "replace"))

    def c_command(self, s: Session, a: list) -> bytes:
        if len(a) == 1:
            return R.array([_command_info(n) for n in self.names])
        sub = a[1].lower()
        if sub == b"count":
            return R.integer(len(self.names))
        if sub == b"info":
            return R.array([_command_info(n.decode().lower()) if n.lower() in self.table
                            else R.nil(s.proto) for n in a[2:]])
        # COMMAND DOCS answered as unknown makes redis-cli use its own hints
        return R.error("ERR unknown subcommand '%s'. Try COMMAND HELP."
                       % a[1].decode("utf-8", "replace"))

    def c_config(self, s: Session, a: list) -> bytes:
        if len(a) >= 3 and a[1].lower() == b"get":
            # every acknowledged write is in LevelDB's log: an AOF, fsynced with --sync
            known = {"timeout": str(int(self.timeout)), "databases": "1", "save": "",
                     "appendonly": "yes", "appendfsync": "always" if self.sync else "no",
                     "maxclients": str(self.figures().get("resp", {}).get("max_clients", 0)),
                     "port": str(self.port)}
            out: dict = {}
            for pattern in a[2:]:
                m = glob_matcher(pattern.lower())
                for k, v in known.items():
                    if (m(k.encode()) if m else k.encode().startswith(literal_prefix(pattern))):
                        out[k] = v
            return R.encode(out, s.proto)
        if len(a) >= 2 and a[1].lower() in (b"set", b"rewrite", b"resetstat"):
            return R.error("ERR CONFIG %s: Flin's settings are `flin start` options"
                           % a[1].decode("utf-8", "replace").upper())
        return arity("config") if len(a) < 2 else R.error(
            "ERR unknown subcommand '%s'. Try CONFIG HELP." % a[1].decode("utf-8", "replace"))

    def c_time(self, s: Session, a: list) -> bytes:
        if len(a) != 1:
            return arity("time")
        t = time.time_ns() // 1000
        return R.array([R.bulk(b"%d" % (t // 1_000_000)), R.bulk(b"%d" % (t % 1_000_000))])

    def c_info(self, s: Session, a: list) -> Plan:
        wanted = {x.lower().decode("utf-8", "replace") for x in a[1:]} or {"default"}
        return [[STATS]], lambda rs, proto: self._info(rs[0], wanted, proto)

    def _info(self, stats: Any, wanted: set, proto: int) -> bytes:
        if type(stats) is ErrorReply:
            return R.flin_error(stats)
        from .info import info_text
        return R.text(info_text(stats, wanted, self.port), proto)

    def c_dbsize(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 1:
            return arity("dbsize")
        return [[STATS]], _fin_dbsize

    # -- strings ---------------------------------------------------------------
    def c_get(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("get")
        return [[GET, a[1]]], _fin_value

    def c_strlen(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("strlen")
        return [[GET, a[1]]], _fin_strlen

    def c_type(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("type")
        return [[EXISTS, a[1]]], _fin_type

    def c_set(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 3:
            return arity("set")
        if len(a) == 3:
            return [[SET, a[1], a[2], None, 0]], _fin_ok
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
            elif opt == b"KEEPTTL" and not seen:
                flags |= KEEP_TTL
                seen = opt
            elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not seen and i + 1 < len(a):
                seen = opt
                i += 1
                n = _int(a[i])
                if n is None:
                    return R.error(_NOT_INT)
                ttl = _ttl_of(opt, n)
                if ttl is None:
                    return R.error("ERR invalid expire time in 'set' command")
            else:
                return _SYNTAX
            i += 1
        cmd = [SET, a[1], a[2], ttl, flags]
        if flags & GET_OLD:
            return [cmd], _fin_value
        return [cmd], _fin_ok_or_nil if flags & (NX | XX) else _fin_ok

    def c_setnx(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 3:
            return arity("setnx")
        return [[SET, a[1], a[2], None, NX]], _fin_bool

    def _setex(self, a: list, name: str, unit: bytes) -> bytes | Plan:
        if len(a) != 4:
            return arity(name)
        n = _int(a[2])
        if n is None:
            return R.error(_NOT_INT)
        ttl = _ttl_of(unit, n)
        if ttl is None or n <= 0:
            return R.error("ERR invalid expire time in '%s' command" % name)
        return [[SET, a[1], a[3], ttl, 0]], _fin_ok

    def c_setex(self, s: Session, a: list) -> bytes | Plan:
        return self._setex(a, "setex", b"EX")

    def c_psetex(self, s: Session, a: list) -> bytes | Plan:
        return self._setex(a, "psetex", b"PX")

    def c_getset(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 3:
            return arity("getset")
        return [[SET, a[1], a[2], None, GET_OLD]], _fin_value

    def c_getdel(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("getdel")
        return [[GETDEL, a[1]]], _fin_value

    def c_mget(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("mget")
        return [[MGET, a[1:]]], _fin_mget

    def c_mset(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 3 or len(a) % 2 == 0:
            return arity("mset")
        return [[MSET, a[1:], None]], _fin_ok

    def c_del(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("del")
        return [[DEL, a[1:]]], _fin_int

    def c_unlink(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("unlink")
        return [[DEL, a[1:]]], _fin_int

    def c_exists(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("exists")
        if len(a) > MAX_ITEMS + 1:
            return R.error("ERR more than %d keys" % MAX_ITEMS)
        return [[EXISTS, k] for k in a[1:]], _fin_count

    # -- counters --------------------------------------------------------------
    def _incr(self, a: list, name: str, n: int, by: bytes | None) -> bytes | Plan:
        if by is not None:
            v = _int(by)
            if v is None:
                return R.error(_NOT_INT)
            if n < 0:
                if v == INT64_MIN:
                    return R.error("ERR decrement would overflow")
                v = -v
            n = v
        return [[INCR, a[1], n, None]], _fin_int

    def c_incr(self, s: Session, a: list) -> bytes | Plan:
        return self._incr(a, "incr", 1, None) if len(a) == 2 else arity("incr")

    def c_decr(self, s: Session, a: list) -> bytes | Plan:
        return self._incr(a, "decr", -1, None) if len(a) == 2 else arity("decr")

    def c_incrby(self, s: Session, a: list) -> bytes | Plan:
        return self._incr(a, "incrby", 1, a[2]) if len(a) == 3 else arity("incrby")

    def c_decrby(self, s: Session, a: list) -> bytes | Plan:
        return self._incr(a, "decrby", -1, a[2]) if len(a) == 3 else arity("decrby")

    # -- expiry ----------------------------------------------------------------
    def _expire(self, a: list, name: str, unit: bytes) -> bytes | Plan:
        if len(a) < 3:
            return arity(name)
        if len(a) > 3:
            opt = a[3].upper()
            if opt in (b"NX", b"XX", b"GT", b"LT"):
                return R.error("ERR %s's NX, XX, GT and LT options are not supported by Flin"
                               % name.upper())
            return R.error("ERR Unsupported option %s" % a[3].decode("utf-8", "replace"))
        n = _int(a[2])
        if n is None:
            return R.error(_NOT_INT)
        ttl = _ttl_of(unit, n, allow_past=True)
        if ttl is None:
            return R.error("ERR invalid expire time in '%s' command" % name)
        return [[EXPIRE, a[1], ttl]], _fin_bool

    def c_expire(self, s: Session, a: list) -> bytes | Plan:
        return self._expire(a, "expire", b"EX")

    def c_pexpire(self, s: Session, a: list) -> bytes | Plan:
        return self._expire(a, "pexpire", b"PX")

    def c_expireat(self, s: Session, a: list) -> bytes | Plan:
        return self._expire(a, "expireat", b"EXAT")

    def c_pexpireat(self, s: Session, a: list) -> bytes | Plan:
        return self._expire(a, "pexpireat", b"PXAT")

    def c_ttl(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("ttl")
        return [[TTL, a[1]]], _fin_ttl_s

    def c_pttl(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("pttl")
        return [[TTL, a[1]]], _fin_int

    def c_persist(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 2:
            return arity("persist")
        return [[PERSIST, a[1]]], _fin_bool

    # -- the keyspace ------------------------------------------------------------
    def c_scan(self, s: Session, a: list) -> bytes | Plan:
        if len(a) < 2:
            return arity("scan")
        cursor = _int(a[1])
        if cursor is None or cursor < 0:
            return R.error("ERR invalid cursor")
        pattern, count, kind = b"*", SCAN_DEFAULT, None
        i = 2
        while i < len(a):
            opt = a[i].upper()
            if i + 1 >= len(a):
                return _SYNTAX
            if opt == b"MATCH":
                pattern = a[i + 1]
            elif opt == b"COUNT":
                c = _int(a[i + 1])
                if c is None:
                    return R.error(_NOT_INT)
                if c < 1:
                    return _SYNTAX
                count = min(c, MAX_SCAN_LIMIT)
            elif opt == b"TYPE":
                kind = a[i + 1].lower()
            else:
                return _SYNTAX
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


def _name_ok(name: bytes) -> bool:
    return all(0x21 <= c <= 0x7E for c in name)


def _ttl_of(unit: bytes, n: int, allow_past: bool = False) -> int | None:
    """ms from now for EX/PX seconds or ms, EXAT/PXAT an absolute time; None
    if not valid (SET: not positive; past ``MAX_TTL_MS``). An absolute time
    in the past is 1 ms for SET (the key is gone at once) and 0 for EXPIREAT
    (Flin deletes the key now)."""
    if unit in (b"EX", b"PX"):
        ms = n * 1000 if unit == b"EX" else n
        if ms > MAX_TTL_MS or (ms <= 0 and not allow_past):
            return None
        return ms
    at = n * 1000 if unit == b"EXAT" else n
    if n <= 0 and not allow_past:
        return None
    ms = at - _now_ms()
    if ms > MAX_TTL_MS:
        return None
    return ms if ms > 0 else (0 if allow_past else 1)


def _fin_dbsize(results: list, proto: int) -> bytes:
    r = results[0]
    if type(r) is ErrorReply:
        return R.flin_error(r)
    return R.integer(sum(sh.get("keys", 0) for sh in r["shards"] if sh.get("alive")))


# COMMAND's entries (Redis 7: name, arity, flags, first key, last key, step,
# ACL categories, tips, key specs, subcommands)
_ARITY = {"get": 2, "set": -3, "setnx": 3, "setex": 4, "psetex": 4, "getdel": 2, "getset": 3,
          "mget": -2, "mset": -3, "del": -2, "unlink": -2, "exists": -2, "incr": 2, "decr": 2,
          "incrby": 3, "decrby": 3, "expire": -3, "pexpire": -3, "expireat": -3,
          "pexpireat": -3, "ttl": 2, "pttl": 2, "persist": 2, "strlen": 2, "type": 2,
          "scan": -2, "keys": 2, "ping": -1, "echo": 2, "quit": -1, "select": 2, "hello": -1,
          "auth": -2, "client": -2, "command": -1, "info": -1, "dbsize": 1, "time": 1,
          "config": -2}
_WRITES = {"set", "setnx", "setex", "psetex", "getdel", "getset", "mset", "del", "unlink",
           "incr", "decr", "incrby", "decrby", "expire", "pexpire", "expireat", "pexpireat",
           "persist"}
_KEYS = {"mget": (1, -1, 1), "mset": (1, -1, 2), "del": (1, -1, 1), "unlink": (1, -1, 1),
         "exists": (1, -1, 1)}
_NO_KEYS = {"scan", "keys", "ping", "echo", "quit", "select", "hello", "auth", "client",
            "command", "info", "dbsize", "time", "config"}


def _command_info(name: str) -> bytes:
    first, last, step = (0, 0, 0) if name in _NO_KEYS else _KEYS.get(name, (1, 1, 1))
    flags = [b"+write\r\n" if name in _WRITES else b"+readonly\r\n"]
    return R.array([R.bulk(name.encode()), R.integer(_ARITY.get(name, -1)), R.array(flags),
                    R.integer(first), R.integer(last), R.integer(step), R.EMPTY_ARRAY,
                    R.EMPTY_ARRAY, R.EMPTY_ARRAY, R.EMPTY_ARRAY])

