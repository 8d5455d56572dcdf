"""Cluster mode on one machine: a real etcd, nodes bound to 127.0.0.2-4,
the worker links over TCP with CURVE."""
from __future__ import annotations

import os
import time

import pytest

from flin import errors
from flin.ring import Ring
from tests.support.faults import wait_for
from tests.support.hosts import flin_cli

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def three(hosts, shards=6, extra=None, placed=True):
    hosts.create(shards, ["n1", "n2", "n3"] if placed else None)
    return [hosts.node("n%d" % (i + 1), h, extra).start() for i, h in enumerate(HOSTS)]


@pytest.fixture
def keys_dir(tmp_short):
    d = os.path.join(tmp_short, "keys")
    got = flin_cli("keygen", d, "--server", "router", "--client", "worker")
    assert got.returncode == 0, got.stderr
    return d


def test_three_nodes_serve_every_key_through_any_node_over_curve(hosts, keys_dir):
    nodes = three(hosts, extra=["--backend-keys", keys_dir])
    st = hosts.status()
    assert {n: v["shards"] for n, v in st["nodes"].items()} == \
        {"n1": [0, 3], "n2": [1, 4], "n3": [2, 5]}
    assert all(v["alive"] for v in st["nodes"].values())
    with nodes[0].client() as c:
        # a client given one node's endpoint learns every node's routers
        assert sorted(c.routers()) == sorted(n.endpoint for n in nodes)
        for i in range(300):
            c.set(b"k%d" % i, b"v%d" % i)
    for n in nodes:
        with n.client(discover=False) as c:
            assert c.mget([b"k%d" % i for i in range(300)]) == [b"v%d" % i for i in range(300)]
            view = c.node()
            assert view["node"] == n.name and view["etcd"]["ok"]
            assert c.status()["cluster"]["placement"] == ["n1", "n2", "n3"] * 2
    # the links are CURVE: a "worker" without the keys cannot take shard 0's
    # identity at a router (ROUTER_HANDOVER would hand it the shard's requests)
    import zmq
    from flin import protocol
    ctx = zmq.Context()
    impostor = ctx.socket(zmq.DEALER)
    impostor.setsockopt(zmq.IDENTITY, b"shard-0")
    impostor.connect("tcp://%s:%d" % (HOSTS[1], nodes[1].backend_port))
    impostor.send(protocol.encode(protocol.HELLO_ID, [0, os.getpid()]))
    time.sleep(0.5)
    key0 = next(b"k%d" % i for i in range(300) if Ring(6).shard(b"k%d" % i) == 0)
    with nodes[1].client(discover=False, timeout=3, retries=0) as c:
        assert c.get(key0) == key0.replace(b"k", b"v")
    impostor.close(0)
    ctx.term()
    out = flin_cli("cluster", "status", *hosts.etcd_args())
    assert out.returncode == 0, out.stderr
    assert "3/3 nodes alive" in out.stdout and "node n2" in out.stdout
    # a backup through one node takes every node's shards
    dest = os.path.join(hosts.folder, "backup")
    got = flin_cli("backup", "-e", nodes[2].endpoint, dest)
    assert got.returncode == 0, got.stderr
    assert "backup: 6 shards, 300 keys" in got.stdout, got.stdout


def test_the_first_node_takes_unplaced_shards_and_data_survives_restart(hosts):
    hosts.create(4)
    assert hosts.status()["unplaced"] == [0, 1, 2, 3]
    n1 = hosts.node("n1", HOSTS[0]).start()
    assert hosts.status()["nodes"]["n1"]["shards"] == [0, 1, 2, 3]
    n2 = hosts.node("n2", HOSTS[1]).start()
    assert hosts.status()["nodes"]["n2"]["shards"] == []
    with n2.client() as c:
        c.mset({b"a%d" % i: b"%d" % i for i in range(200)})
    n1.stop()
    n1.start()
    with n2.client() as c:
        assert c.mget([b"a%d" % i for i in range(200)]) == [b"%d" % i for i in range(200)]


def test_a_dead_node_fails_only_its_shards_at_once_and_serves_again(hosts):
    nodes = three(hosts, extra=["--lease-ttl", "2"])
    ring = Ring(6)
    keys = [b"d%d" % i for i in range(120)]
    with nodes[0].client() as c:
        c.mset({k: k for k in keys})
    nodes[1].kill()                                   # n2: shards 1 and 4
    with nodes[0].client(retries=0, timeout=3, discover=False) as c:
        t0 = time.monotonic()
        for k in keys:
            s = ring.shard(k)
            t = time.monotonic()
            if s in (1, 4):
                with pytest.raises(errors.ShardUnavailable):
                    c.get(k)
                assert time.monotonic() - t < 0.5, "not at once"
            else:
                assert c.get(k) == k
        assert time.monotonic() - t0 < 5
    # the lease runs out: the node shows as down, with the shards it holds
    wait_for(lambda: not hosts.status()["nodes"]["n2"]["alive"], 15, "n2's lease to expire")
    got = flin_cli("cluster", "status", *hosts.etcd_args())
    assert got.returncode == 4 and "DOWN" in got.stdout
    got = flin_cli("status", "-e", nodes[0].endpoint)
    assert got.returncode == 4 and "nodes down: n2" in got.stdout, got.stdout
    nodes[1].start()
    with nodes[2].client(discover=False) as c:
        wait_for(lambda: c.status()["shards"][1]["alive"], 10, "shard 1 back")
        assert c.mget(keys) == keys


def test_etcd_down_the_data_path_serves_and_changes_say_why(hosts):
    nodes = three(hosts)
    hosts.etcd.pause()                                # etcd hangs: every call times out
    try:
        time.sleep(7)                                 # past the lease's TTL (5 s)
        with nodes[0].client(retries=0, timeout=3) as c:
            for i in range(200):                      # writes too: every node confirms
                c.set(b"e%d" % i, b"%d" % i)          # that etcd is down (failsafe)
            assert c.mget([b"e%d" % i for i in range(200)]) == [b"%d" % i for i in range(200)]
            etcd = c.node()["etcd"]
            assert etcd["ok"] is False and "cannot be reached" in etcd["error"]
        got = flin_cli("cluster", "status", *hosts.etcd_args(), timeout=30)
        assert got.returncode == 3 and "etcd cannot be reached" in got.stderr
    finally:
        hosts.etcd.resume()
    with nodes[1].client(discover=False) as c:
        wait_for(lambda: c.node()["etcd"]["ok"], 10, "the agent to reach etcd again")
    assert all(v["alive"] for v in hosts.status()["nodes"].values())


def test_refusals_say_why(hosts, tmp_short):
    got = flin_cli("start", "--data", os.path.join(tmp_short, "x"), *hosts.etcd_args(),
                   "--node", "n1", "--advertise", "127.0.0.2")
    assert got.returncode == 2 and "flin cluster create" in got.stderr
    hosts.create(2)
    again = flin_cli("cluster", "create", *hosts.etcd_args(), "--shards", "2")
    assert again.returncode == 4 and "already exists" in again.stderr
    got = flin_cli("start", "--data", os.path.join(tmp_short, "x"), *hosts.etcd_args(),
                   "--node", "n1", "--advertise", "127.0.0.2", "--shards", "4")
    assert got.returncode == 2 and "cluster's" in got.stderr
    got = flin_cli("start", "--data", os.path.join(tmp_short, "x"), *hosts.etcd_args(),
                   "--node", "n1")
    assert got.returncode == 2 and "--advertise" in got.stderr
    got = flin_cli("start", "--data", os.path.join(tmp_short, "x"), *hosts.etcd_args(),
                   "--node", "n1", "--advertise", "10.1.2.3")
    assert got.returncode == 2 and "--backend-keys" in got.stderr
    n1 = hosts.node("n1", HOSTS[0]).start()
    got = flin_cli("reshard", "--data", n1.data, "--shards", "4")
    assert got.returncode == 1 and "cannot be resharded yet" in got.stderr, got.stderr
    # a second node under the same name, while the first holds its lease
    twin = hosts.node("n1b", HOSTS[1])
    twin.name = "n1"
    twin.start(expect_ready=False)
    assert twin.proc.wait(30) == 2
    assert "already up" in twin.log()
    twin.proc.stdout.close()
    twin.proc = None
    # a node's folder is not a one-host folder, nor the other way round
    got = flin_cli("start", "--data", n1.data, "--shards", "2", "--bind",
                   "ipc://" + os.path.join(tmp_short, "s.sock"))
    assert got.returncode == 2
    n1.stop()
    got = flin_cli("start", "--data", n1.data, "--shards", "2", "--bind",
                   "ipc://" + os.path.join(tmp_short, "s.sock"))
    assert got.returncode == 2 and "cluster t" in got.stderr
