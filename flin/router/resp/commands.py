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

import time
from typing import Any, Callable

from ... import __version__
from ...protocol import EXISTS, GET, MGET, REPLICA, STATS, TTL, ErrorReply
from . import reply as R
from . import strings
from .common import NOT_INT, Plan, Session, arity, to_int
from .info import REDIS_VERSION, info_text
from .keyspace import Keyspace, glob_matcher, literal_prefix


# Known Redis commands that Flin refuses, and why (never half-done).
_ATOMIC = "Flin cannot run commands atomically together across shards"
_REPLICA_READS = (GET, MGET, EXISTS, TTL)
REFUSED: dict[str, str] = {
    **{c: "%s: %s; send the commands without %s (redis-py: pipeline(transaction=False))"
       % (c.upper(), _ATOMIC, c.upper()) for c in ("multi", "watch", "unwatch")},
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
}


class Commands:
    """Translates Redis commands; ``figures()`` gives INFO the router's own
    (``flin.router.stats``), ``password`` is what AUTH must give (None: none)."""

    def __init__(self, figures: Callable[[], dict], password: bytes | None,
                 port: int, timeout: float, sync: bool = False) -> None:
        self.figures, self.password, self.port, self.timeout = figures, password, port, timeout
        self.sync = sync
        self.keyspace = Keyspace()
        self.table: dict[bytes, Callable[[Session, list], Any]] = {}
        for where in (strings, self.keyspace, self):
            for name in dir(where):
                if name.startswith("c_"):
                    self.table[name[2:].encode()] = getattr(where, name)
        self.names = sorted(n.decode() for n in self.table)

    def translate(self, s: Session, args: list) -> bytes | Plan:
        """Reply bytes, or ``(flin commands, finish)``."""
        name = args[0]
        if s.multi:
            return self._after_multi(s, name.lower())
        handler = self.table.get(name)
        if handler is None:
            lower = name.lower()
            handler = self.table.get(lower)
            if handler is None:
                return self._unknown(s, args, lower.decode("utf-8", "replace"))
        if not s.authed and name.lower() not in (b"auth", b"hello", b"quit"):
            return R.error("NOAUTH Authentication required.")
        out = handler(s, args)
        if s.readonly and type(out) is tuple:   # READONLY: its reads from any copy
            out = ([[REPLICA, c] if c[0] in _REPLICA_READS else c for c in out[0]], out[1])
        return out  # type: ignore[no-any-return]

    def c_readonly(self, s: Session, a: list) -> bytes:
        """READONLY (Redis Cluster's): this connection's GET, MGET, EXISTS and
        TTL may be answered by any copy of the key's shard, maybe stale."""
        if len(a) != 1:
            return arity("readonly")
        s.readonly = True
        return R.OK

    def c_readwrite(self, s: Session, a: list) -> bytes:
        if len(a) != 1:
            return arity("readwrite")
        s.readonly = False
        return R.OK

    def _after_multi(self, s: Session, lower: bytes) -> bytes:
        """Between a refused MULTI and its EXEC or DISCARD nothing runs, so that
        a transaction is never half done (redis-py's default pipeline sends
        MULTI, its commands and EXEC in one write)."""
        if lower == b"exec":
            s.multi = False
            return R.error("EXECABORT Transaction discarded: Flin refused its MULTI")
        if lower == b"discard":
            s.multi = False
            return R.OK
        if lower == b"quit":
            return self.c_quit(s, [lower])
        return R.error("ERR not run: it follows a MULTI, which Flin refuses (%s); "
                       "EXEC or DISCARD ends it" % _ATOMIC)

    def c_multi(self, s: Session, a: list) -> bytes:
        if len(a) != 1:
            return arity("multi")
        s.multi = True
        return R.error("ERR " + REFUSED["multi"])

    def c_exec(self, s: Session, a: list) -> bytes:
        return R.error("ERR EXEC without MULTI")

    def c_discard(self, s: Session, a: list) -> bytes:
        return R.error("ERR DISCARD without MULTI")

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
        n = to_int(a[1])
        if n is None:
            return R.error(NOT_INT)
        return R.OK if n == 0 else R.error("ERR DB index is out of range")

    def c_auth(self, s: Session, a: list) -> bytes:
        if len(a) < 2:
            return arity("auth")
        if len(a) > 3:
            return R.error("ERR syntax error")
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
            v = to_int(a[1])
            if v is None:
                return R.error("ERR Protocol version is not an integer or out of range")
            if v not in (2, 3):
                return R.error("NOPROTO unsupported protocol version")
            proto = v
        creds, name, i = None, None, 2          # every option is read before any is applied
        while i < len(a):
            opt = a[i].lower()
            if opt == b"auth" and i + 2 < len(a):
                creds = (a[i + 1], a[i + 2])
                i += 3
            elif opt == b"setname" and i + 1 < len(a):
                if not _name_ok(a[i + 1]):
                    return R.error("ERR Client names cannot contain spaces, newlines or special "
                                   "characters.")
                name = a[i + 1]
                i += 2
            else:
                return R.error("ERR Syntax error in HELLO option '%s'"
                               % a[i].decode("utf-8", "replace"))
        if creds is not None and self.password is not None:   # (none: the default user has none)
            out = self._login(s, *creds)
            if out != R.OK:
                return out
        if not s.authed:
            return R.error("NOAUTH HELLO must be called with the client already authenticated, "
                           "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                           "authenticate the client and select the RESP protocol version at the "
                           "same time")
        if name is not None:
            s.name = name
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
                pattern = pattern.lower()
                m = glob_matcher(pattern)
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
        return R.text(info_text(stats, wanted, self.port), proto)

    def c_dbsize(self, s: Session, a: list) -> bytes | Plan:
        if len(a) != 1:
            return arity("dbsize")
        return [[STATS]], fin_dbsize

    # -- strings ---------------------------------------------------------------


def _name_ok(name: bytes) -> bool:
    return all(0x21 <= c <= 0x7E for c in name)


def fin_dbsize(results: list, proto: int) -> bytes:
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

