"""A node cut off from etcd (and from the other nodes) by a real partition:
it lives in a network namespace joined to the host by a veth pair, and the
test takes the link down. It must stop acknowledging writes before its lease
can expire in etcd (after that another node could be given its shards),
while it keeps answering reads; once the link is back it serves writes again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from flin.ring import Ring
from tests.support.cluster import ROOT
from tests.support.faults import wait_for
from tests.support.hosts import Netns, netns_hosts, set_ok

pytestmark = pytest.mark.skipif(not Netns.possible(),
                                reason="needs root and ip netns (CI runs as root)")


def _node_key_gone_at(etcd_url: str, cluster: str, node: str, timeout: float) -> float:
    """CLOCK_MONOTONIC when etcd dropped the node's registration (its lease expired)."""
    from flin.cluster.etcd import Etcd as Client, EtcdOptions
    from flin.cluster.topology import node_key
    c = Client(EtcdOptions.parse(etcd_url, timeout=1.0))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if c.get(node_key(cluster, node))[0] is None:
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError("%s's registration outlived %.0fs" % (node, timeout))
    finally:
        c.close()


def test_a_node_cut_off_stops_acknowledging_writes_before_its_lease_expires(tmp_short):
    with netns_hosts(tmp_short, "flinp") as (hosts, ns, extra):
        hosts.create(2, ["n1", "n2"])
        n1 = hosts.node("n1", ns.host_ip, extra).start()
        n2 = hosts.node("n2", ns.ns_ip, extra, netns=ns.name).start()
        mine = [k for k in ("p%d" % i for i in range(200)) if Ring(2).shard(k.encode()) == 1]
        with n1.client() as c:                           # through n1: n2's shard is linked
            c.set(mine[0], "before")
        out = os.path.join(tmp_short, "writer.json")
        w = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m",
                              "tests.support.hosts", "writer", n2.endpoint, "9", out, *mine],
                             cwd=ROOT)
        time.sleep(2.0)
        cut = time.monotonic()
        ns.cut()
        gone = _node_key_gone_at(hosts.etcd.url, hosts.cluster, "n2", 30)
        assert w.wait(30) == 0
        with open(out) as f:
            rec = json.load(f)
        before = [t for t in rec["acks"] if t < cut]
        after = [t for t in rec["acks"] if t > cut]
        assert len(before) > 20, "the writer did not get going"
        last = max(after) if after else cut
        print("partition: last write acknowledged %.2fs after the cut, lease gone %.2fs after"
              % (last - cut, gone - cut))
        # the fence: nothing acknowledged once the lease may have expired in etcd
        assert last < gone, ("n2 acknowledged a write %.2fs after its lease expired in etcd"
                             % (last - gone))
        assert rec["refused"] and any("etcd lease" in w for w in rec["why"]), rec["why"]
        assert rec["reads_while_refused"] > 0, "reads must be served while writes are fenced"
        ns.heal()
        # back: a new lease, and writes again
        wait_for(lambda: hosts.status()["nodes"]["n2"]["alive"], 30, "n2 to register again")
        with n1.client(timeout=10) as c:
            wait_for(lambda: set_ok(c, mine[1]), 20, "writes to n2's shard again")

