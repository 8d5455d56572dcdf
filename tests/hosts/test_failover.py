"""Replicas and failover, Jepsen-style, with real processes and a real etcd:
three nodes on 127.0.0.2-4, every shard on all three (``--replicas 3``,
``--acks majority``), a GET/SET/CAS history and a write storm running while
a node is killed, paused (a zombie primary), wiped, or etcd restarts. After
each: no acknowledged write is lost, the history is linearizable, no two
nodes were primary of one shard in one term, and failover took < 5 s."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.support.faults import wait_for
from tests.support.hosts import Netns, flin_cli, netns_hosts
from tests.support.storm import (
    Storm, key_on, one_primary_per_term, pause, resume, wait_written,
)

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
SHARDS = 4
FAILOVER_S = 5.0


def replicated(hosts, extra=None, acks="majority"):
    hosts.create(SHARDS, ["n1", "n2", "n3"], ("--replicas", "3", "--acks", acks))
    nodes = [hosts.node("n%d" % (i + 1), h, extra).start() for i, h in enumerate(HOSTS)]
    wait_for(lambda: all(r["primary"] for r in hosts.status()["replica_shards"]), 20,
             "every shard has a primary")
    wait_in_step(hosts, 20, "every copy in step")
    return nodes


def in_step(hosts, alive=None) -> bool:
    """Every copy (on the ``alive`` nodes) is a voter, and none lags."""
    for row in hosts.status()["replica_shards"]:
        for n, pos in row["copies"].items():
            if alive is not None and n not in alive:
                continue
            if pos is None or not pos.get("voter") or pos.get("lag") not in (0,):
                return False
    return True


def wait_in_step(hosts, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: in_step(hosts), timeout, what)
    except AssertionError:
        got = flin_cli("cluster", "status", *hosts.etcd_args())
        raise AssertionError("%s: not in %.0f s\n%s" % (what, timeout, got.stdout)) from None


def primary_of(hosts, shard: int) -> str:
    return hosts.status()["replica_shards"][shard]["primary"]


def _storm_then(hosts, nodes, fault, heal, seconds=3.0, through_victim=False):
    """Run the storm through the nodes ``fault`` spares (and the victim too,
    ``through_victim``), fault, measure the failover of a shard the faulted
    node was primary of, heal, check."""
    victim = nodes[0]
    shard = next(r["shard"] for r in hosts.status()["replica_shards"]
                 if r["primary"] == victim.name)
    others = [n for n in nodes if n is not victim]
    # (through the victim: its clients wait out a pause, their requests in its router)
    storm = Storm([n.endpoint for n in (nodes if through_victim else others)],
                  registers=4 if through_victim else 3,
                  timeout=10.0 if through_victim else 4.0).start()
    time.sleep(seconds)
    t0 = time.monotonic()
    fault(victim)
    with others[0].client(discover=False, timeout=30) as c:
        failover = wait_written(c, key_on(shard, SHARDS), t0)
        time.sleep(seconds)
        storm.stop()
        heal(victim)
        figures = storm.check(c)
    new = primary_of(hosts, shard)
    assert new != victim.name, "shard %d still has %s as its primary" % (shard, new)
    print("failover of shard %d: %.2f s; %s" % (shard, failover, figures))
    assert figures["ok"] > 50 and figures["acked_writes"] > 50, figures
    assert failover < FAILOVER_S, "failover took %.2f s" % failover
    one_primary_per_term(hosts.folder)
    return failover


def test_sigkill_of_a_primary_node_loses_no_acknowledged_write(hosts):
    nodes = replicated(hosts)
    _storm_then(hosts, nodes, lambda n: n.kill(), lambda n: None)
    # back: it rejoins as a follower of every shard and catches up
    nodes[0].start()
    wait_in_step(hosts, 30, "the returning node catches up")
    with nodes[0].client(discover=False) as c, nodes[1].client(discover=False) as d:
        c.set(b"back", b"1")
        assert d.get(b"back") == b"1"


def test_a_paused_primary_a_zombie_is_fenced_and_rejoins_as_follower(hosts):
    nodes = replicated(hosts)
    paused_for = []

    def fault(n):
        pause(n)
        paused_for.append(time.monotonic())

    def heal(n):
        # paused past its lease (3 s): another node took its shards; when it
        # wakes it must not acknowledge a write or serve a read as primary
        time.sleep(max(0.0, paused_for[0] + 4.0 - time.monotonic()))
        resume(n)
        time.sleep(1.0)      # what it does on waking is in the history the storm keeps
    # clients of the zombie's own router too: their requests wait in it while
    # it is paused, and reach its shards the moment it wakes
    _storm_then(hosts, nodes, fault, heal, through_victim=True)
    wait_in_step(hosts, 30, "the zombie rejoins as a follower")
    st = hosts.status()
    assert all(r["primary"] != "n1" or r["term"] > 1 for r in st["replica_shards"])


def test_etcd_restart_under_writes_loses_nothing(hosts):
    nodes = replicated(hosts)
    storm = Storm([n.endpoint for n in nodes]).start()
    time.sleep(2.0)
    hosts.etcd.stop()
    time.sleep(2.0)                   # etcd down: nobody can be elected, primaries go on
    hosts.etcd.start()
    time.sleep(3.0)
    storm.stop()
    with nodes[1].client(discover=False, timeout=30) as c:
        figures = storm.check(c)
    print("etcd restart: %s" % figures)
    assert figures["acked_writes"] > 50, figures
    one_primary_per_term(hosts.folder)


def test_a_wiped_follower_copies_again_and_then_carries_the_data(hosts):
    nodes = replicated(hosts)
    with nodes[0].client() as c:
        for i in range(500):
            c.set(b"k%d" % i, b"v%d" % i)
    victim = nodes[2]
    victim.stop()
    shutil.rmtree(victim.data)        # its disk is gone
    victim.start()
    wait_in_step(hosts, 30, "the wiped node copies every shard again")
    # its copies are real: with the first node gone, n2 and n3 are a majority
    nodes[0].kill()
    with nodes[2].client(discover=False, timeout=30) as c:
        got = c.mget([b"k%d" % i for i in range(500)])
        assert got == [b"v%d" % i for i in range(500)]
        c.set(b"after", b"yes")
    # replica reads from the recopied node, through every client door
    with nodes[2].client(discover=False, read_from="replica") as c:
        assert c.get(b"k1") == b"v1"
    got = flin_cli("get", "--endpoint", nodes[2].endpoint, "--replica", "k2")
    assert got.returncode == 0 and got.stdout.strip() == "v2", got


def test_changing_the_number_of_copies_on_a_live_cluster(hosts):
    hosts.create(SHARDS, ["n1", "n2", "n3"], ("--replicas", "2"))
    nodes = [hosts.node("n%d" % (i + 1), h).start() for i, h in enumerate(HOSTS)]
    wait_for(lambda: all(r["primary"] for r in hosts.status()["replica_shards"]), 20,
             "every shard has a primary")
    with nodes[0].client() as c:
        for i in range(300):
            c.set(b"k%d" % i, b"v%d" % i)
    got = flin_cli("cluster", "replicas", *hosts.etcd_args(), "3")
    assert got.returncode == 0, got.stderr
    wait_for(lambda: all(len(r["copies"]) == 3 for r in hosts.status()["replica_shards"])
             and in_step(hosts), 30, "a third copy of every shard, in step")
    got = flin_cli("cluster", "status", *hosts.etcd_args())
    assert "lag 0" in got.stdout, got.stdout
    got = flin_cli("cluster", "replicas", *hosts.etcd_args(), "2")
    assert got.returncode == 0, got.stderr
    wait_for(lambda: all(len(r["copies"]) == 2 for r in hosts.status()["replica_shards"]),
             20, "two copies again")
    with nodes[1].client() as c:
        assert c.mget([b"k%d" % i for i in range(300)]) == [b"v%d" % i for i in range(300)]


@pytest.mark.soak
def test_five_failovers_in_a_row_soak(hosts):
    nodes = replicated(hosts)
    times = []
    for _ in range(5):
        nodes = nodes[1:] + nodes[:1]        # the next node, in turn, that holds a primary
        held = {r["primary"] for r in hosts.status()["replica_shards"]}
        while nodes[0].name not in held:
            nodes = nodes[1:] + nodes[:1]
        times.append(_storm_then(hosts, nodes, lambda n: n.kill(), lambda n: None, 5.0))
        nodes[0].start()
        wait_in_step(hosts, 60, "the returning node catches up")
    print("failovers: %s s, median %.2f" % ([round(t, 2) for t in times], sorted(times)[2]))


@pytest.mark.skipif(not Netns.possible(), reason="needs root and ip netns (CI runs as root)")
def test_a_partitioned_primary_is_replaced_and_rejoins(tmp_short):
    """n3 lives in a network namespace; cutting its link leaves it alone with
    its primaries: the other side elects new ones, and n3, fenced by its
    lease, acknowledges nothing meanwhile; healed, it rejoins as follower."""
    with netns_hosts(tmp_short, "flinr") as (hosts, ns, extra):
        hosts.create(SHARDS, ["n3", "n1", "n2"], ("--replicas", "3"))
        hosts.node("n3", ns.ns_ip, extra, netns=ns.name).start()
        n1 = hosts.node("n1", ns.host_ip, extra).start()
        n2 = hosts.node("n2", ns.host_ip, extra).start()
        wait_for(lambda: all(r["primary"] for r in hosts.status()["replica_shards"]), 20,
                 "every shard has a primary")
        wait_in_step(hosts, 20, "every copy in step")
        shard = next(r["shard"] for r in hosts.status()["replica_shards"]
                     if r["primary"] == "n3")
        storm = Storm([n1.endpoint, n2.endpoint]).start()
        time.sleep(2.0)
        t0 = time.monotonic()
        ns.cut()
        with n1.client(discover=False, timeout=30) as c:
            failover = wait_written(c, key_on(shard, SHARDS), t0)
            time.sleep(2.0)
            ns.heal()
            time.sleep(2.0)
            storm.stop()
            figures = storm.check(c)
        print("partition: failover of shard %d %.2f s; %s" % (shard, failover, figures))
        assert failover < FAILOVER_S, "failover took %.2f s" % failover
        assert primary_of(hosts, shard) != "n3"
        wait_in_step(hosts, 30, "the cut-off node rejoins as a follower")
        one_primary_per_term(tmp_short)


def test_replica_reads_spread_over_the_copies_through_every_door(hosts):
    import redis
    from tests.support.hosts import free_port
    nodes = replicated(hosts)
    port = free_port(HOSTS[0])
    nodes[0].stop()
    nodes[0].extra = ["--resp", "%s:%d" % (HOSTS[0], port)]
    nodes[0].start()
    wait_in_step(hosts, 30, "n1 back in step")
    key = key_on(1, SHARDS, "rr")
    with nodes[0].client() as c:
        c.set(key, b"v")
        before = c.stats()["shards"][1]["ops"].get("get", 0)
        with nodes[0].client(read_from="replica") as r:
            assert all(r.get(key) == b"v" for _ in range(300))
            assert r.mget([key, b"nope"]) == [b"v", None] and r.exists(key)
        served = c.stats()["shards"][1]["ops"].get("get", 0) - before
    # three copies: the primary answered about a third of the 300 replica reads
    assert served < 200, "the primary served %d of 300 replica reads" % served
    rc = redis.Redis(host=HOSTS[0], port=port, socket_timeout=5)
    assert rc.execute_command("READONLY") in (b"OK", True)
    assert rc.get(key) == b"v"
    assert rc.execute_command("READWRITE") in (b"OK", True)
    rc.set(key, b"w")
    assert rc.get(key) == b"w"
    rc.close()
