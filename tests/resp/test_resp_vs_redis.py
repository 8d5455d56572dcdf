"""Flin's RESP port against a real ``redis-server``, case by case: each case
is a list of commands sent to both as one pipeline on a fresh connection,
and the replies must be the same, type by type (status, bulk, nil,
integer, error with its exact text, array). Keys are ``{k}``-prefixed with
the case's number, so cases never see each other's keys.

What Flin answers differently on purpose is not here but in
``test_resp_commands.py``: SELECT past 0, INFO's fields, HELLO's server
name, DBSIZE (an estimate past 10,000 keys a shard), SCAN cursors.
"""
from __future__ import annotations

import pytest

from tests.support.resp import Raw, RedisServer, resp_cluster

MAX = "9223372036854775807"
MIN = "-9223372036854775808"

CASES = [
    # connection
    [["PING"], ["PING", "hi"], ["PING", "a", "b"], ["ECHO", "x"], ["ECHO"], ["SELECT", "0"],
     ["SELECT", "x"], ["ping"], ["EcHo", ""]],
    [["NOSUCH", "a", "b"], ["NOSUCH"], ["AUTH", "pw"], ["HELLO", "4"], ["HELLO", "x"],
     ["CLIENT", "SETNAME", "a b"], ["CLIENT", "SETNAME", "me"], ["CLIENT", "GETNAME"],
     ["CLIENT", "NOSUCH"], ["CLIENT"]],
    # GET / SET and options
    [["GET", "{k}a"], ["SET", "{k}a", "1"], ["GET", "{k}a"], ["SET", "{k}e", ""], ["GET", "{k}e"],
     ["STRLEN", "{k}e"], ["STRLEN", "{k}a"], ["STRLEN", "{k}none"], ["GET"], ["SET", "{k}a"]],
    [["SET", "{k}a", "1", "NX"], ["SET", "{k}a", "2", "NX"], ["GET", "{k}a"],
     ["SET", "{k}b", "1", "XX"], ["SET", "{k}a", "3", "XX"], ["GET", "{k}a"],
     ["SET", "{k}a", "4", "NX", "XX"], ["SET", "{k}a", "4", "nx"], ["SET", "{k}a", "5", "BOGUS"]],
    [["SET", "{k}a", "1", "EX", "0"], ["SET", "{k}a", "1", "EX", "abc"], ["SET", "{k}a", "1", "PX", "-5"],
     ["SET", "{k}a", "1", "EX", "100"], ["TTL", "{k}a"], ["SET", "{k}a", "2", "KEEPTTL"],
     ["TTL", "{k}a"], ["GET", "{k}a"], ["SET", "{k}a", "3"], ["TTL", "{k}a"],
     ["SET", "{k}a", "1", "EX", "10", "PX", "100"], ["SET", "{k}a", "1", "KEEPTTL", "EX", "1"],
     ["SET", "{k}a", "1", "EX"], ["SET", "{k}a", "1", "EX", "9999999999999999"]],
    [["SET", "{k}a", "new", "GET"], ["SET", "{k}a", "newer", "GET"], ["GET", "{k}a"],
     ["SET", "{k}a", "x", "NX", "GET"], ["GET", "{k}a"], ["SET", "{k}b", "x", "XX", "GET"],
     ["GET", "{k}b"], ["SET", "{k}c", "1", "EXAT", "1"], ["GET", "{k}c"],
     ["SET", "{k}a", "v", "EXAT", "0"], ["SET", "{k}a", "v", "PXAT", "1", "GET"], ["GET", "{k}a"]],
    [["SETNX", "{k}a", "1"], ["SETNX", "{k}a", "2"], ["GET", "{k}a"], ["SETNX", "{k}a"],
     ["SETEX", "{k}b", "100", "v"], ["TTL", "{k}b"], ["SETEX", "{k}b", "0", "v"],
     ["SETEX", "{k}b", "abc", "v"], ["PSETEX", "{k}c", "100000", "v"], ["TTL", "{k}c"],
     ["PSETEX", "{k}c", "-1", "v"], ["SETEX", "{k}b", "1"]],
    [["GETSET", "{k}a", "1"], ["GETSET", "{k}a", "2"], ["GET", "{k}a"], ["GETSET", "{k}a"],
     ["GETDEL", "{k}a"], ["GETDEL", "{k}a"], ["GET", "{k}a"], ["GETDEL"]],
    # several keys
    [["MSET", "{k}a", "1", "{k}b", "2", "{k}c", "3"], ["MGET", "{k}a", "{k}b", "{k}x", "{k}c"],
     ["MSET", "{k}a"], ["MSET", "{k}a", "1", "{k}b"], ["MGET"], ["MSET", "{k}a", ""],
     ["MGET", "{k}a", "{k}a"]],
    [["MSET", "{k}a", "1", "{k}b", "2", "{k}c", "3"], ["EXISTS", "{k}a", "{k}a", "{k}x", "{k}b"],
     ["DEL", "{k}a", "{k}x", "{k}a"], ["EXISTS", "{k}a"], ["UNLINK", "{k}b", "{k}c"],
     ["EXISTS", "{k}b", "{k}c"], ["DEL"], ["UNLINK"], ["EXISTS"], ["TYPE", "{k}a"],
     ["SET", "{k}a", "1"], ["TYPE", "{k}a"], ["TYPE"]],
    # counters
    [["INCR", "{k}n"], ["INCR", "{k}n"], ["INCRBY", "{k}n", "10"], ["DECR", "{k}n"],
     ["DECRBY", "{k}n", "5"], ["INCRBY", "{k}n", "-20"], ["GET", "{k}n"], ["INCRBY", "{k}n", "x"],
     ["INCRBY", "{k}n", "1.5"], ["DECRBY", "{k}n", ""], ["INCR"], ["INCRBY", "{k}n"]],
    [["SET", "{k}s", "abc"], ["INCR", "{k}s"], ["SET", "{k}s", " 1"], ["INCR", "{k}s"],
     ["SET", "{k}s", "01"], ["INCR", "{k}s"], ["SET", "{k}s", "-0"], ["INCR", "{k}s"],
     ["SET", "{k}s", "1e3"], ["DECR", "{k}s"], ["SET", "{k}s", "-7"], ["INCR", "{k}s"]],
    [["SET", "{k}m", MAX], ["INCR", "{k}m"], ["GET", "{k}m"], ["SET", "{k}m", MIN], ["DECR", "{k}m"],
     ["DECRBY", "{k}x", MIN], ["INCRBY", "{k}x", MIN], ["INCRBY", "{k}x", "9223372036854775808"],
     ["SET", "{k}m", "99999999999999999999"], ["INCR", "{k}m"]],
    # expiry
    [["EXPIRE", "{k}a", "10"], ["SET", "{k}a", "v"], ["TTL", "{k}a"], ["EXPIRE", "{k}a", "100"],
     ["TTL", "{k}a"], ["PERSIST", "{k}a"], ["PERSIST", "{k}a"], ["TTL", "{k}a"], ["TTL", "{k}x"],
     ["PTTL", "{k}a"], ["PTTL", "{k}x"], ["EXPIRE", "{k}a", "abc"], ["EXPIRE", "{k}a"],
     ["PERSIST", "{k}x"], ["TTL"]],
    [["SET", "{k}a", "v"], ["EXPIRE", "{k}a", "-1"], ["GET", "{k}a"], ["SET", "{k}b", "v"],
     ["PEXPIRE", "{k}b", "0"], ["EXISTS", "{k}b"], ["SET", "{k}c", "v"], ["EXPIREAT", "{k}c", "1"],
     ["GET", "{k}c"], ["SET", "{k}d", "v"], ["PEXPIREAT", "{k}d", "1"], ["EXISTS", "{k}d"],
     ["EXPIREAT", "{k}x", "1"], ["PEXPIRE", "{k}x", "1000"]],
    [["SET", "{k}a", "v"], ["EXPIREAT", "{k}a", "4102444800"], ["EXPIREAT", "{k}x", "4102444800"],
     ["SET", "{k}b", "v"], ["PEXPIRE", "{k}b", "100000"], ["TTL", "{k}b"]],
    [["SET", "{k}h", "v"], ["EXPIRE", "{k}h", MIN], ["EXPIRE", "{k}h", "-9223372036854776"],
     ["EXISTS", "{k}h"], ["EXPIRE", "{k}h", "-9223372036854775"], ["EXISTS", "{k}h"],
     ["PEXPIRE", "{k}x", MIN]],
    [["SET", "{k}r", "1", "EX", "10", "EX", "20"], ["TTL", "{k}r"],
     ["SET", "{k}r", "1", "KEEPTTL", "KEEPTTL"], ["TTL", "{k}r"],
     ["SET", "{k}r", "1", "PX", "5000", "EX", "20"], ["AUTH", "a", "b", "c"], ["AUTH"]],
    # binary safety: every byte value in keys and values
    [["SET", bytes(range(256)), bytes(range(255, -1, -1))], ["GET", bytes(range(256))],
     ["STRLEN", bytes(range(256))], ["SET", "{k}crlf", "a\r\nb\r\n"], ["GET", "{k}crlf"]],
]


@pytest.fixture(scope="module")
def servers():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        redis = RedisServer(d).start()
        try:
            flin, port = resp_cluster(d, shards=8)
            try:
                yield redis.port, port
            finally:
                assert flin.stop() == 0
        finally:
            redis.stop()


def _keyed(case: list, i: int) -> list:
    tag = b"c%d:" % i
    return [[(a if isinstance(a, bytes) else a.encode()).replace(b"{k}", tag) for a in cmd]
            for cmd in case]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_same_replies_as_redis(servers, i):
    redis_port, flin_port = servers
    cmds = _keyed(CASES[i], i)
    with Raw(redis_port) as r, Raw(flin_port) as f:
        want = r.pipeline(cmds)
        got = f.pipeline(cmds)
    for cmd, w, g in zip(cmds, want, got):
        assert g == w, "%r: redis %r, flin %r" % (cmd, w, g)


def test_same_replies_one_command_at_a_time(servers):
    """The same cases unpipelined: each reply before the next command goes."""
    redis_port, flin_port = servers
    for i, case in enumerate(CASES):
        cmds = _keyed(case, 1000 + i)
        with Raw(redis_port) as r, Raw(flin_port) as f:
            for cmd in cmds:
                assert f.call(*cmd) == r.call(*cmd), cmd


GLOB_KEYS = ["g]", "g^", "ga", "g-", "gb", "a*b", "a?b", "axb", "ab", "a\\b", "[x", "x]"]
GLOBS = ["g[a-]", "g[^a]", "g[ab]", "g[b-a]", "a\\*b", "a?b", "a*", "a[?]b", "g[", "[[]x", "x]",
         "g[\\]]", "*b", "a\\\\b", "?", "g?"]


@pytest.mark.parametrize("pattern", GLOBS)
def test_globs_match_as_redis(servers, pattern):
    """KEYS and SCAN MATCH over the same keys, under a prefix of their own."""
    redis_port, flin_port = servers
    tag = "glob%d:" % GLOBS.index(pattern)
    keys = [tag + k for k in GLOB_KEYS]
    found = []
    for port in (redis_port, flin_port):
        with Raw(port) as r:
            r.pipeline([["SET", k, "v"] for k in keys])
            kind, got = r.call("KEYS", tag + pattern)
            assert kind == "*"
            scanned, cursor = [], b"0"
            while True:
                _, (c, (_, page)) = r.call("SCAN", cursor, "MATCH", tag + pattern, "COUNT", "3")
                scanned += [v for _, v in page]
                cursor = c[1]
                if cursor == b"0":
                    break
            assert sorted(scanned) == sorted(v for _, v in got)
            found.append(sorted(v for _, v in got))
    assert found[1] == found[0], (pattern, found)
