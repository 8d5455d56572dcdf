"""Each client operation against a real cluster (module-scoped, keys prefixed ``ops:``)."""
from __future__ import annotations

import os
import tempfile

import pytest
import zmq

import flin
from flin import errors, protocol


def test_ping(client):
    assert client.ping() is True


def test_set_get_roundtrip_bytes(client):
    assert client.set(b"ops:a", b"hello") is None
    got = client.get(b"ops:a")
    assert got == b"hello" and type(got) is bytes


def test_overwrite(client):
    client.set(b"ops:ow", b"1")
    client.set(b"ops:ow", b"2")
    assert client.get(b"ops:ow") == b"2"


def test_missing_and_empty_are_different(client):
    assert client.get(b"ops:never") is None
    client.set(b"ops:empty", b"")
    assert client.get(b"ops:empty") == b""
    assert client.exists(b"ops:empty") is True
    assert client.exists(b"ops:never") is False


def test_str_is_utf8(client):
    client.set("ops:clé", "välue")
    assert client.get("ops:clé".encode()) == "välue".encode()
    assert client.get("ops:clé") == "välue".encode()


def test_binary_keys_and_values(client):
    key, value = b"ops:\x00\xff\x80bin", bytes(range(256)) * 4
    client.set(key, value)
    assert client.get(key) == value
    assert client.get(b"ops:\x00\xff\x80bi") is None


def test_megabyte_value(client):
    value = os.urandom(2 << 20)
    client.set(b"ops:mb", value)
    assert client.get(b"ops:mb") == value


def test_delete_counts_existing(client):
    client.mset({b"ops:d1": b"1", b"ops:d2": b"2", b"ops:d3": b""})
    assert client.delete(b"ops:d1", b"ops:d2", b"ops:d3", b"ops:d-missing") == 3
    assert client.mget([b"ops:d1", b"ops:d2", b"ops:d3"]) == [None, None, None]
    assert client.delete(b"ops:d1") == 0
    assert client.delete() == 0


def test_delete_same_key_twice_counts_once(client):
    client.set(b"ops:dd", b"x")
    assert client.delete(b"ops:dd", b"ops:dd") == 1


def test_exists(client):
    client.set(b"ops:ex", b"v")
    assert client.exists(b"ops:ex") is True
    client.delete(b"ops:ex")
    assert client.exists(b"ops:ex") is False


def test_mget_keeps_order_across_shards(client):
    keys = [b"ops:mg%d" % i for i in range(50)]
    client.mset({k: k[::-1] for k in keys[::2]})
    want = [k[::-1] if i % 2 == 0 else None for i, k in enumerate(keys)]
    assert client.mget(keys) == want
    assert client.mget(list(reversed(keys))) == list(reversed(want))
    assert client.mget([]) == []
    assert client.mget([keys[0], keys[0]]) == [keys[0][::-1]] * 2


def test_mset_many_keys_and_pairs(client):
    mapping = {b"ops:ms%03d" % i: b"v%d" % i for i in range(300)}
    assert client.mset(mapping) is None
    assert client.mget(list(mapping)) == list(mapping.values())
    client.mset([("ops:pair1", "a"), ("ops:pair2", b"b")])
    assert client.mget(["ops:pair1", "ops:pair2"]) == [b"a", b"b"]
    assert client.mset({}) is None


def test_incr_decr_basic(client):
    assert client.incr(b"ops:ctr") == 1
    assert client.incr(b"ops:ctr", 4) == 5
    assert client.get(b"ops:ctr") == b"5"
    assert client.decr(b"ops:ctr", 7) == -2
    assert client.get(b"ops:ctr") == b"-2"


def test_scan_basic(client):
    client.mset({b"ops:sc:b": b"2", b"ops:sc:a": b"1", b"ops:sc:c": b"3"})
    assert client.scan(b"ops:sc:") == ([b"ops:sc:a", b"ops:sc:b", b"ops:sc:c"], None)
    assert client.scan(b"ops:sc:", values=True)[0] == [
        (b"ops:sc:a", b"1"), (b"ops:sc:b", b"2"), (b"ops:sc:c", b"3")]


def test_status(client, shared_cluster):
    st = client.status()
    assert st["router"]["pid"] > 0
    assert [s["id"] for s in st["shards"]] == list(range(shared_cluster.shards))
    assert all(s["alive"] and s["pid"] > 0 for s in st["shards"])
    assert st["router"]["pid"] in shared_cluster.child_pids()
    assert {s["pid"] for s in st["shards"]} <= shared_cluster.child_pids()


def test_pipeline_results_in_order(client):
    p = client.pipeline()
    p.set(b"ops:p1", b"x").get(b"ops:p1").incr(b"ops:pc").incr(b"ops:pc", 2)
    p.exists(b"ops:p1").delete(b"ops:p1").get(b"ops:p1").mget([b"ops:p1", b"ops:pc"])
    assert len(p) == 8
    assert p.execute() == [None, b"x", 1, 3, True, 1, None, [None, b"3"]]
    assert p.execute() == []  # the queue was emptied


def test_pipeline_error_in_its_place(client):
    client.set(b"ops:pnotint", b"abc")
    with client.pipeline() as p:
        p.set(b"ops:pe", b"1")
        p.incr(b"ops:pnotint")
        p.get(b"ops:pe")
        p.set(b"k" * (protocol.MAX_KEY + 1), b"v")
        p.incr(b"ops:pe")
    r = p.results
    assert r[0] is None and r[2] == b"1" and r[4] == 2
    assert isinstance(r[1], errors.NotAnInteger)
    assert isinstance(r[3], errors.TooLarge)
    assert client.get(b"ops:pnotint") == b"abc"


def test_pipeline_context_manager_does_not_send_on_exception(client):
    with pytest.raises(RuntimeError):
        with client.pipeline() as p:
            p.set(b"ops:pabort", b"1")
            raise RuntimeError("boom")
    assert p.results is None
    assert client.get(b"ops:pabort") is None


def test_context_manager_and_reuse_after_close(shared_cluster):
    with flin.Client(shared_cluster.endpoint, timeout=5.0) as c:
        c.set(b"ops:cm", b"1")
    assert c.get(b"ops:cm") == b"1"  # and usable again: it reconnects
    c.close()
    c.close()  # idempotent


def test_key_at_limit_ok_over_limit_too_large(client):
    k = b"k" * protocol.MAX_KEY
    client.set(k, b"v")
    assert client.get(k) == b"v"
    assert client.delete(k) == 1
    with pytest.raises(errors.TooLarge) as ei:
        client.set(k + b"k", b"v")
    assert "limit" in str(ei.value)
    for call in (lambda: client.get(k + b"k"), lambda: client.exists(k + b"k"),
                 lambda: client.mget([b"ops:x", k + b"k"]), lambda: client.delete(k + b"k")):
        with pytest.raises(errors.TooLarge):
            call()
    assert client.ping()


def test_value_over_limit_too_large(client):
    with pytest.raises(errors.TooLarge) as ei:
        client.set(b"ops:huge", b"\0" * (protocol.MAX_VALUE + 1))
    assert "limit" in str(ei.value)
    assert client.get(b"ops:huge") is None


def test_value_far_over_limit_refused_not_timeout(shared_cluster):
    # Bigger than the router's frame cap: a clear TooLarge, never a hang.
    with shared_cluster.client(timeout=3.0) as c:
        with pytest.raises(errors.TooLarge):
            c.set(b"ops:huger", b"\0" * (protocol.MAX_MESSAGE + 1))
        assert c.get(b"ops:huger") is None


def test_wrong_key_type_is_type_error(client):
    with pytest.raises(TypeError):
        client.get(123)
    with pytest.raises(TypeError):
        client.set(b"ops:t", 5)


def test_error_hierarchy():
    for cls in (errors.BadRequest, errors.TooLarge, errors.NotAnInteger, errors.Overflow,
                errors.ShardUnavailable, errors.OutcomeUnknown, errors.Overloaded,
                errors.StorageError, errors.ShuttingDown, errors.InternalError):
        assert issubclass(cls, errors.ServerError) and issubclass(cls, errors.FlinError)
        assert type(errors.error_for_code(cls.code, "m")) is cls
    assert issubclass(errors.Timeout, errors.FlinError)
    assert not issubclass(errors.Timeout, errors.ServerError)


def test_timeout_when_router_never_answers():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        ep = "ipc://" + os.path.join(d, "mute.sock")
        ctx = zmq.Context()
        mute = ctx.socket(zmq.ROUTER)
        mute.bind(ep)
        try:
            with flin.Client(ep, timeout=0.5) as c:
                with pytest.raises(errors.Timeout):
                    c.get(b"x")
                with pytest.raises(errors.Timeout):
                    c.ping()
            assert mute.poll(1000)  # the request did reach it
        finally:
            mute.close(0)
            ctx.term()


def test_unreachable_endpoint_is_a_transport_error():
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        with flin.Client("ipc://" + os.path.join(d, "none.sock"), timeout=0.3) as c:
            with pytest.raises(errors.TransportError):
                c.ping()


def test_submit_many_refuses_a_frame_the_router_would_reject_whole(client):
    from flin.protocol import MAX_ITEMS, PING
    with pytest.raises(flin.errors.TooLarge):
        client.submit_many([[[PING]]] * (MAX_ITEMS + 1))
    rids = client.submit_many([[[PING]], [[PING], [PING]]])
    assert sorted(client.collect(r) for r in rids) == [[True], [True, True]]
