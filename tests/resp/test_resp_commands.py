"""redis-py, sync and asyncio, against Flin's RESP port: every command,
pipelines, SCAN and KEYS, RESP3, and what Flin answers differently from
Redis on purpose (refusals that say why, SELECT, INFO, DBSIZE)."""
from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from flin import Client
from tests.support.resp import Raw


@pytest.fixture
def r(resp):
    with redis.Redis(port=resp[1], socket_timeout=10) as conn:
        yield conn


@pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")   # setex, psetex
def test_every_command_through_redis_py(r):
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.set("p:a", "1") is True and r.get("p:a") == b"1"
    assert r.set("p:a", "2", nx=True) is None and r.set("p:a", "2", xx=True) is True
    assert r.set("p:a", "3", get=True) == b"2"
    assert r.set("p:t", "v", ex=100) and 99 <= r.ttl("p:t") <= 100
    assert 99_000 <= r.pttl("p:t") <= 100_000
    assert r.set("p:t", "w", keepttl=True) and r.ttl("p:t") > 90
    assert r.set("p:t", "v", px=50_000) and r.persist("p:t") is True and r.ttl("p:t") == -1
    assert r.setnx("p:nx", "1") is True and r.setnx("p:nx", "2") is False
    assert r.setex("p:ex", 100, "v") and r.psetex("p:px", 100_000, "v")
    assert r.getset("p:a", "4") == b"3" and r.getdel("p:a") == b"4" and r.get("p:a") is None
    assert r.mset({"p:m1": "1", "p:m2": "2", "p:m3": "3"}) is True
    assert r.mget(["p:m1", "p:none", "p:m3"]) == [b"1", None, b"3"]
    assert r.exists("p:m1", "p:m2", "p:none") == 2
    assert r.delete("p:m1", "p:none") == 1 and r.unlink("p:m2", "p:m3") == 2
    assert r.incr("p:n") == 1 and r.incrby("p:n", 10) == 11
    assert r.decr("p:n") == 10 and r.decrby("p:n", 4) == 6
    assert r.expire("p:n", 100) is True and r.pexpire("p:n", 100_000) is True
    assert r.expireat("p:n", 4102444800) is True and r.pexpireat("p:n", 4102444800000) is True
    assert r.strlen("p:n") == 1 and r.type("p:n") == b"string" and r.type("p:x") == b"none"
    assert r.ttl("p:none") == -2
    with pytest.raises(redis.ResponseError, match="value is not an integer"):
        r.set("p:s", "x") and r.incr("p:s")
    t = r.time()
    assert t[0] > 1_700_000_000 and 0 <= t[1] < 1_000_000
    assert r.client_setname("tester") and r.client_getname() == "tester"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("SELECT", 0) is True


def test_a_pipeline_is_one_request_and_answers_in_order(r):
    with r.pipeline(transaction=False) as p:
        for i in range(500):
            p.set("pl:%d" % i, i)
            p.get("pl:%d" % i)
            p.incr("plc")
        out = p.execute()
    assert out[0::3] == [True] * 500
    assert out[1::3] == [b"%d" % i for i in range(500)]
    assert out[2::3] == list(range(1, 501))


def test_the_same_keys_through_flin_client(resp, r):
    r.set("both:a", "from-resp")
    with Client(resp[0].endpoint, timeout=10) as c:
        assert c.get(b"both:a") == b"from-resp"
        c.set(b"both:b", b"from-flin")
    assert r.get("both:b") == b"from-flin"


def test_scan_match_count_and_keys(r):
    r.mset({"scan:user:%03d" % i: "v" for i in range(250)})
    r.mset({"scan:other:%d" % i: "v" for i in range(30)})
    got = list(r.scan_iter(match="scan:user:*", count=37))
    assert sorted(got) == sorted(b"scan:user:%03d" % i for i in range(250))
    assert len(got) == len(set(got))                      # each once
    odd = set(r.scan_iter(match="scan:user:?[13579]?", count=50))
    assert odd == {b"scan:user:%03d" % i for i in range(250) if (i // 10) % 2}
    assert set(r.scan_iter(match="scan:*er:1*")) == \
        {b"scan:user:%03d" % i for i in range(100, 200)} | {b"scan:other:1"} | \
        {b"scan:other:%d" % i for i in range(10, 20)}
    assert set(r.keys("scan:other:2*")) == {b"scan:other:2"} | {b"scan:other:%d" % i
                                                                for i in range(20, 30)}
    assert list(r.scan_iter(match="scan:user:*", _type="hash")) == []
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.execute_command("SCAN", "x")
    with pytest.raises(redis.ResponseError, match="unknown or expired SCAN cursor"):
        r.execute_command("SCAN", "987654321")


def test_keys_refuses_past_its_limit(r):
    from flin.router.resp.keyspace import KEYS_LIMIT
    with r.pipeline(transaction=False) as p:
        for i in range(0, KEYS_LIMIT + 1, 1000):
            p.mset({"many:%06d" % j: "v" for j in range(i, min(i + 1000, KEYS_LIMIT + 1))})
        p.execute()
    with pytest.raises(redis.ResponseError, match="KEYS would look at more than %d" % KEYS_LIMIT):
        r.keys("many:*")
    assert len(r.keys("many:00000*")) == 10


def test_refused_commands_say_why_and_change_nothing(r):
    with pytest.raises(redis.ResponseError, match="MULTI: Flin cannot run commands atomically"):
        r.execute_command("MULTI")
    with pytest.raises(redis.ResponseError, match="Flin cannot run commands atomically"):
        with r.pipeline() as p:                           # redis-py's default: MULTI/EXEC
            p.set("tx:a", "1")
            p.execute()
    assert r.get("tx:a") is None                          # nothing between MULTI and EXEC ran
    with Raw(r.connection_pool.connection_kwargs["port"]) as raw:
        got = raw.pipeline([["MULTI"], ["SET", "tx:b", "1"], ["EXEC"], ["SET", "tx:c", "1"],
                            ["EXEC"], ["MULTI"], ["DISCARD"], ["GET", "tx:c"]])
    assert [t for t, _ in got] == ["-", "-", "-", "+", "-", "-", "+", "$"]
    assert got[2][1].startswith(b"EXECABORT") and got[4][1] == b"ERR EXEC without MULTI"
    assert r.get("tx:b") is None and r.get("tx:c") == b"1"
    for cmd, why in ((["HSET", "h", "f", "v"], "strings only"), (["EVAL", "return 1", 0], "no scripts"),
                     (["MSETNX", "a", "1", "b", "2"], "different shards"),
                     (["FLUSHALL"], "not supported"), (["SUBSCRIBE", "c"], "no pub/sub")):
        with pytest.raises(redis.ResponseError, match=why):
            r.execute_command(*cmd)
    assert r.exists("h", "a", "b") == 0
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 1)


def test_info_dbsize_config_command(r):
    r.mset({"info:%d" % i: "v" for i in range(20)})
    info = r.info()
    assert info["redis_version"] == "7.0.0" and info["shards"] == 8
    assert info["connected_clients"] >= 1 and info["total_commands_processed"] > 0
    assert info["db0"]["keys"] >= 20
    assert set(r.info("keyspace")) == {"db0"}
    mem = r.info("memory")                 # the router and its 8 shards, resident
    assert mem["flin_memory_processes"] == 9 and mem["used_memory"] > 9 * (10 << 20)
    assert r.dbsize() >= 20
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    names = set(r.command())
    assert len(names) == r.command_count() and {"get", "set", "scan", "incrby"} <= names


def test_resp3(resp):
    with redis.Redis(port=resp[1], protocol=3, socket_timeout=10) as r3:
        assert r3.set("r3:a", "1") is True and r3.get("r3:a") == b"1"
        assert r3.get("r3:none") is None
        assert r3.mget("r3:a", "r3:none") == [b"1", None]
        assert "redis_version" in r3.info()
    with Raw(resp[1]) as raw:
        hello = raw.call("HELLO", "3")
        assert hello[0] == "%"
        fields = dict(zip([v for _, v in hello[1][0::2]], hello[1][1::2]))
        assert fields[b"proto"] == (":", b"3")
        assert raw.call("GET", "r3:none") == ("_", b"")


def test_asyncio_redis_py_with_many_coroutines(resp):
    async def main() -> None:
        pool = redis.asyncio.BlockingConnectionPool(port=resp[1], socket_timeout=10,
                                                    max_connections=50, timeout=10)
        r = redis.asyncio.Redis(connection_pool=pool)
        try:
            async def one(i: int) -> None:
                assert await r.set("aio:%d" % i, i) is True
                assert await r.get("aio:%d" % i) == b"%d" % i
                assert await r.incr("aio:n") >= 1
            await asyncio.gather(*(one(i) for i in range(1000)))
            assert await r.get("aio:n") == b"1000"
            async with r.pipeline(transaction=False) as p:
                p.mget(["aio:%d" % i for i in range(1000)])
                p.delete(*["aio:%d" % i for i in range(1000)])
                got, deleted = await p.execute()
            assert got == [b"%d" % i for i in range(1000)] and deleted == 1000
        finally:
            await r.aclose()
    asyncio.run(main())
