"""Moving whole shards between nodes while the cluster serves: no
acknowledged write lost, single-key histories linearizable, and a crash of
the target or of the source, before or after the commit, resumes or rolls
back (``flin.cluster.mover``)."""
from __future__ import annotations

import json
import os
import time

from flin.ring import Ring
from tests.faults.test_faults_durability import _check
from tests.faults.test_linearizability import histories, linearizable
from tests.support import faults as faultlib
from tests.support.faults import _comm, wait_for
from tests.support.hosts import flin_cli, set_ok

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def keys_on(shards: set[int], n: int, count: int, prefix: str) -> list[str]:
    ring, keys, i = Ring(n), [], 0
    while len(keys) < count:
        k = "%s%d" % (prefix, i)
        if ring.shard(k.encode()) in shards:
            keys.append(k)
        i += 1
    return keys


def preload(node, count: int = 3000) -> dict[bytes, bytes]:
    items = {b"pre%d" % i: b"value-%d" % i * 20 for i in range(count)}
    with node.client() as c:
        for i in range(0, count, 500):
            c.mset(dict(list(items.items())[i:i + 500]))
        c.set(b"pre-ttl", b"x")
        c.expire(b"pre-ttl", 600)
        c.incr(b"pre-ctr", 5)
    return items


def check_preload(node, items: dict[bytes, bytes]) -> None:
    with node.client(discover=False) as c:
        keys = sorted(items)
        assert c.mget(keys) == [items[k] for k in keys]
        assert 500 < c.ttl(b"pre-ttl") <= 600_000
        assert c.get(b"pre-ctr") == b"5"


class Endpoint:
    """What ``faults._check`` needs of a cluster: a client, every shard up."""

    def __init__(self, node, shards: int) -> None:
        self.node, self.shards = node, shards

    def client(self, **kw):
        return self.node.client(**kw)

    @property
    def proc(self):
        return self.node.proc

    @property
    def endpoint(self):
        return self.node.endpoint


def cli(hosts, *args: str) -> str:
    got = flin_cli("cluster", *args, *hosts.etcd_args(), timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    return got.stdout


def test_add_node_and_drain_under_a_write_storm_lose_nothing_and_stay_linearizable(hosts):
    hosts.create(4, ["n1", "n2"])
    n1, n2 = (hosts.node("n%d" % (i + 1), h).start() for i, h in enumerate(HOSTS[:2]))
    items = preload(n1)
    lin_keys = keys_on({0, 2}, 4, 3, "lin:")          # n1's shards: every one of them moves
    folder = hosts.folder
    storms = [os.path.join(folder, "storm-%d.json" % i) for i in range(2)]
    lins = [os.path.join(folder, "lin-%d.json" % i) for i in range(3)]
    procs = [faultlib.spawn(["storm", n.endpoint, "c%d" % i, "9", storms[i]])
             for i, n in enumerate((n1, n2))]
    procs += [faultlib.spawn(["lin", (n1, n2)[i % 2].endpoint, "p%d" % i, "9", str(i), lins[i],
                              *lin_keys]) for i in range(3)]
    try:
        n3 = hosts.node("n3", HOSTS[2]).start()
        time.sleep(1.0)
        out = cli(hosts, "add-node", "n3")
        assert "every move is done" in out
        out = cli(hosts, "drain", "n1")
        assert "every move is done" in out
    finally:
        faultlib.reap(procs, 90)
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    st = hosts.status()
    assert "n1" not in st["nodes"] or not st["nodes"]["n1"]["shards"]
    assert sorted(s for n in ("n2", "n3") for s in st["nodes"][n]["shards"]) == [0, 1, 2, 3]
    assert st["epoch"] == 3 and st["move"] is None     # two moves: 2 to n3, then 0 off n1
    assert not [d for d in os.listdir(n1.data) if d.startswith("shard-")], \
        "n1 kept a copy of a shard it handed off"
    reports = []
    for out in storms:
        with open(out) as f:
            reports.append(json.load(f))
    assert not [w for r in reports for w in r["wrong"]], "a read saw a value no write explains"
    live = _check(Endpoint(n3, 4), reports)
    assert live["acked"] > 200 and not live["lost"], live["lost"][:5]
    check_preload(n2, items)
    for key, ops in histories(lins, lin_keys).items():
        assert len(ops) >= 30, (key, len(ops))
        assert linearizable(ops), "history of %s is not linearizable: %s" % (
            key, sorted(ops, key=lambda o: o[0]))
    n1.stop()                       # drained: the others do not need it
    check_preload(n3, items)


def test_a_target_killed_mid_copy_rolls_back_and_the_move_starts_over(hosts):
    hosts.create(3, ["n1", "n2"])                     # n1: 0 and 2; one goes to n3
    n1 = hosts.node("n1", HOSTS[0]).start()
    hosts.node("n2", HOSTS[1]).start()
    items = preload(n1, 30000)                       # several pages per shard
    n3 = hosts.node("n3", HOSTS[2], env={"FLIN_TEST_MOVE_STALL": "copy:2"}).start()
    cli(hosts, "add-node", "n3", "--no-wait")
    wait_for(lambda: (hosts.status()["move"] or {}).get("keys"), 20, "the copy to begin")
    n3.kill()
    moving = hosts.status()["move"]["shard"]
    # the source serves on, reads and writes, while its copy is dead
    with n1.client(retries=0, timeout=3) as c:
        for k in keys_on({moving}, 3, 50, "during:"):
            c.set(k, k)
    n3.env = {}
    n3.start()
    wait_for(lambda: hosts.status()["move"] is None, 60, "the move to finish")
    st = hosts.status()
    assert st["nodes"]["n3"]["shards"] == [moving] and st["error"] is None
    check_preload(n3, items)
    with n3.client(discover=False) as c:
        for k in keys_on({moving}, 3, 50, "during:"):
            assert c.get(k) == k.encode()


def test_a_target_killed_after_the_commit_finishes_the_move_when_back(hosts):
    hosts.create(3, ["n1", "n2"])                     # n1: 0 and 2; one goes to n3
    n1 = hosts.node("n1", HOSTS[0]).start()
    hosts.node("n2", HOSTS[1]).start()
    items = preload(n1, 5000)
    n3 = hosts.node("n3", HOSTS[2], env={"FLIN_TEST_MOVE_STALL": "committed:30"}).start()
    cli(hosts, "add-node", "n3", "--no-wait")
    wait_for(lambda: (hosts.status()["move"] or {}).get("state") == "switch", 30,
             "the commit")
    n3.kill()
    n3.env = {}
    n3.start()
    wait_for(lambda: hosts.status()["move"] is None, 30, "the switch steps")
    st = hosts.status()
    moved = st["nodes"]["n3"]["shards"]
    assert len(moved) == 1
    check_preload(n3, items)
    wait_for(lambda: not os.path.exists(os.path.join(n1.data, "shard-%02d" % moved[0])), 10,
             "the source's copy to be dropped")


def test_a_source_killed_mid_copy_calls_the_move_off_and_it_is_tried_again(hosts):
    hosts.create(3, ["n1", "n2"])                     # n1: 0 and 2; one goes to n3
    n1 = hosts.node("n1", HOSTS[0]).start()
    n2 = hosts.node("n2", HOSTS[1]).start()
    items = preload(n2, 30000)
    n3 = hosts.node("n3", HOSTS[2], env={"FLIN_TEST_MOVE_STALL": "copy:1"}).start()
    cli(hosts, "add-node", "n3", "--no-wait")
    wait_for(lambda: (hosts.status()["move"] or {}).get("keys"), 20, "the copy to begin")
    source = hosts.status()["move"]["from"]
    victim = n1 if source == "n1" else n2
    victim.kill()
    wait_for(lambda: "failed" in (hosts.status()["error"] or ""), 30, "the move called off")
    victim.start()
    wait_for(lambda: hosts.status()["move"] is None and not hosts.status()["plan"], 90,
             "the move tried again")
    assert len(hosts.status()["nodes"]["n3"]["shards"]) == 1
    check_preload(n3, items)


def test_a_source_worker_restarted_inside_the_fence_serves_nothing_and_loses_nothing(hosts):
    """The fence is durable: the source's worker, killed while fenced after the
    last catch-up (the supervisor restarts it), comes back fenced; the mover's
    check before the commit finds its move gone and calls it off; the source
    serves again once its node sees the outcome, and the move is tried again
    and done. (Either of the two alone keeps the writes; with neither, the
    restarted source took writes the commit then left behind.)"""
    import signal
    from flin.supervisor.processes import descendants
    hosts.create(3, ["n1", "n2"])
    n1 = hosts.node("n1", HOSTS[0]).start()
    hosts.node("n2", HOSTS[1]).start()
    items = preload(n1, 3000)
    folder = hosts.folder
    storms = [os.path.join(folder, "storm-%d.json" % i) for i in range(2)]
    n3 = hosts.node("n3", HOSTS[2], env={"FLIN_TEST_MOVE_STALL": "caught_up:3"}).start()
    procs = [faultlib.spawn(["storm", n1.endpoint, "c%d" % i, "10", storms[i]])
             for i in range(2)]
    try:
        time.sleep(1.0)
        cli(hosts, "add-node", "n3", "--no-wait")
        wait_for(lambda: os.path.exists(os.path.join(n1.data, "shard-02", "FENCED")), 30,
                 "the source to be fenced")
        victim = next(p for p in descendants(n1.proc.pid) if _comm(p) == "flin-shard-2")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: any(_comm(p) == "flin-shard-2" and p != victim
                             for p in descendants(n1.proc.pid)), 10, "the source's restart")
        assert os.path.exists(os.path.join(n1.data, "shard-02", "FENCED"))
        st = wait_for(lambda: (lambda s: s if "failed" in (s["error"] or "") or
                               (s["move"] is None and not s["plan"]) else None)(hosts.status()),
                      30, "the move called off (or, were the fence lost, committed)")
        called_off = "failed" in (st["error"] or "")
        n3.stop()                                  # the next try without the stall
        n3.env = {}
        n3.start()
        wait_for(lambda: hosts.status()["move"] is None and not hosts.status()["plan"], 60,
                 "the move tried again")
    finally:
        faultlib.reap(procs, 60)
    assert hosts.status()["nodes"]["n3"]["shards"] == [2]
    reports = []
    for out in storms:
        with open(out) as f:
            reports.append(json.load(f))
    assert not [w for r in reports for w in r["wrong"]]
    live = _check(Endpoint(n3, 3), reports)
    assert live["acked"] > 100 and not live["lost"], live["lost"][:5]
    assert called_off, "the move went on past a source restarted inside its fence"
    check_preload(n3, items)


def test_a_target_dead_inside_the_fence_gives_the_shard_back_to_its_source(hosts):
    """The target dies while its source is fenced: after three lease TTLs a
    node's agent calls the move off, the source serves again, and the move
    is done once the target is back."""
    ttl = ["--lease-ttl", "2"]
    hosts.create(3, ["n1", "n2"])
    n1 = hosts.node("n1", HOSTS[0], ttl).start()
    hosts.node("n2", HOSTS[1], ttl).start()
    items = preload(n1, 3000)
    n3 = hosts.node("n3", HOSTS[2], ttl, env={"FLIN_TEST_MOVE_STALL": "fenced:60"}).start()
    cli(hosts, "add-node", "n3", "--no-wait")
    wait_for(lambda: os.path.exists(os.path.join(n1.data, "shard-02", "FENCED")), 30,
             "the source to be fenced")
    n3.kill()
    key = keys_on({2}, 3, 1, "back:")[0]
    t0 = time.monotonic()
    with n1.client(retries=0, timeout=3) as c:
        wait_for(lambda: set_ok(c, key), 30, "the source to take writes again")
    assert time.monotonic() - t0 < 15
    assert "is down" in (hosts.status()["error"] or "")
    assert not os.path.exists(os.path.join(n1.data, "shard-02", "FENCED"))
    n3.env = {}
    n3.start()
    wait_for(lambda: hosts.status()["move"] is None and not hosts.status()["plan"], 60,
             "the move tried again")
    assert hosts.status()["nodes"]["n3"]["shards"] == [2]
    check_preload(n3, items)
    with n3.client(discover=False) as c:
        assert c.get(key) == b"ok"

