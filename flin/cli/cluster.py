"""``flin cluster ...``: a cluster of many hosts, through its topology in etcd
(``flin.cluster``): create, status, add-node, drain."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, TypeVar

import click

from .common import EXIT_SERVER, EXIT_UNREACHABLE, EXIT_USAGE, etcd_config, etcd_opts
from .replicas import replica_lines, replica_status

T = TypeVar("T")


def _with_etcd(kw: dict, fn: Callable[[Any], T]) -> T:
    """Run ``fn(etcd)``; etcd failures and refusals become one line and an exit code."""
    from ..cluster.agent import options
    from ..cluster.etcd import Etcd, EtcdError, EtcdRefused
    from ..cluster.topology import TopologyError
    cfg = etcd_config(kw)
    try:
        etcd = Etcd(options(cfg))
    except ValueError as exc:
        raise click.UsageError(str(exc))
    try:
        return fn(etcd)
    except EtcdError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_SERVER if isinstance(exc, EtcdRefused) else EXIT_UNREACHABLE)
    except (TopologyError, ValueError) as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_SERVER if isinstance(exc, TopologyError) else EXIT_USAGE)
    finally:
        etcd.close()


@click.group()
def cluster() -> None:
    """A cluster of many hosts, its topology in etcd (README "Many hosts")."""


@cluster.command()
@etcd_opts
@click.option("--shards", required=True, type=click.IntRange(1, 4096),
              help="Shards of the whole cluster (a shard lives on one node at a time).")
@click.option("--nodes", default="", metavar="NAME[,NAME...]",
              help="Place the shards round robin on these nodes; without it the first node "
                   "to start takes them all (then `flin cluster add-node` spreads them).")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 9),
              help="Copies of each shard, on distinct --nodes: one primary, the rest "
                   "followers; failover through etcd (README \"Replicas\").")
@click.option("--acks", default="majority", show_default=True,
              type=click.Choice(["majority", "one"]),
              help="A write is acknowledged once a majority of its shard's copies hold it "
                   "(survives the loss of a minority), or once its primary does (faster; a "
                   "failover may lose the last writes).")
def create(shards: int, nodes: str, replicas: int, acks: str, **kw: Any) -> None:
    """Write a new cluster's first topology to etcd."""
    from ..cluster.topology import create as create_topology
    names = [n.strip() for n in nodes.split(",") if n.strip()]
    topo = _with_etcd(kw, lambda etcd: create_topology(etcd, kw["cluster"], shards, names,
                                                       replicas, acks))
    click.echo("flin: cluster %s created: %d shards%s%s, epoch %d"
               % (topo.cluster, topo.shards,
                  " on %s" % ", ".join(names) if names else " (the first node to start takes them)",
                  ", %d copies each (acks %s)" % (replicas, acks) if replicas > 1 else "",
                  topo.epoch))


def _status(etcd: Any, name: str) -> dict:
    from ..cluster.mover import progress_key
    from ..cluster.topology import Topology, registered_nodes
    topo, rev = Topology.read(etcd, name)
    raw, _ = etcd.get(progress_key(name))
    progress = json.loads(raw) if raw else None
    if progress and topo.move and (progress.get("shard"), progress.get("to")) == \
            (topo.move["shard"], topo.move["to"]):
        topo.move = {**topo.move, "bytes": progress.get("bytes"), "keys": progress.get("keys")}
    live = registered_nodes(etcd, name)
    nodes = {}
    for n in list(topo.nodes) + sorted(set(live) - set(topo.nodes)):
        reg = live.get(n) or {}
        nodes[n] = {"alive": n in live, "member": n in topo.nodes,
                    "draining": n in topo.draining, "advertise": reg.get("advertise"),
                    "routers": reg.get("routers") or [], "shards": topo.shards_of(n)}
    return {"cluster": name, "shards": topo.shards, "epoch": topo.epoch, "revision": rev,
            "nodes": nodes, "placement": topo.placement, "move": topo.move,
            "plan": topo.plan, "error": topo.error,
            "unplaced": [s for s, p in enumerate(topo.placement) if p is None],
            **replica_status(etcd, topo)}


def _ranges(ids: list[int]) -> str:
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(out) or "-"


@cluster.command()
@etcd_opts
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool, **kw: Any) -> None:
    """Nodes (alive or not), where each shard lives, the epoch, what is moving.
    Exits 4 if a node that holds shards is down."""
    st = _with_etcd(kw, lambda etcd: _status(etcd, kw["cluster"]))
    if as_json:
        click.echo(json.dumps(st))
    else:
        click.echo("cluster %s  %d shards  epoch %d  %d/%d nodes alive"
                   % (st["cluster"], st["shards"], st["epoch"],
                      sum(1 for n in st["nodes"].values() if n["alive"]), len(st["nodes"])))
        for name, n in st["nodes"].items():
            click.echo("node %-12s %-5s %-16s shards %-20s routers %s%s"
                       % (name, "alive" if n["alive"] else "DOWN", n["advertise"] or "-",
                          _ranges(n["shards"]), ", ".join(n["routers"]) or "-",
                          "  (draining)" if n["draining"] else ""))
        if st["unplaced"]:
            click.echo("unplaced shards: %s (the next node to start takes them)"
                       % _ranges(st["unplaced"]))
        for shard, to, tries in st["plan"]:
            click.echo("queued: shard %d to %s%s" % (shard, to, " (try %d)" % (tries + 1)
                                                     if tries else ""))
        if st["error"]:
            click.echo("last failure: %s" % st["error"])
        for line in replica_lines(st):
            click.echo(line)
        m = st["move"]
        if m:
            click.echo("moving shard %s from %s to %s: %s%s"
                       % (m.get("shard"), m.get("from"), m.get("to"), m.get("state"),
                          ", %.1f MB copied" % (m["bytes"] / 1e6) if m.get("bytes") else ""))
    if any(n["shards"] and not n["alive"] for n in st["nodes"].values()):
        sys.exit(EXIT_SERVER)


def _wait_moves(etcd: Any, name: str, timeout: float) -> None:
    """Print the moves' progress until none is left; exit 4 if one failed for good."""
    import time
    from ..cluster.mover import progress_key
    from ..cluster.topology import Topology
    deadline = time.monotonic() + timeout
    said = None
    while True:
        topo, _ = Topology.read(etcd, name)
        if topo.move is None and not topo.plan:
            if topo.error:
                click.echo("flin: %s" % topo.error, err=True)
                sys.exit(EXIT_SERVER)
            click.echo("flin: every move is done (epoch %d)" % topo.epoch)
            return
        raw, _ = etcd.get(progress_key(name))
        p = json.loads(raw) if raw else {}
        m = topo.move or {}
        line = "shard %s -> %s: %s" % (m.get("shard"), m.get("to"), m.get("state"))
        if p.get("shard") == m.get("shard") and p.get("to") == m.get("to"):
            line += ", %d keys, %.1f MB, %.1f MB/s" % (p.get("keys", 0), p.get("bytes", 0) / 1e6,
                                                      p.get("mb_s", 0.0))
        line += "; %d more queued" % len(topo.plan)
        if topo.error:
            line += " (%s)" % topo.error
        if line != said:
            click.echo(line)
            said = line
        if time.monotonic() > deadline:
            click.echo("flin: moves still running after %.0fs (they go on; `flin cluster "
                       "status` shows them)" % timeout, err=True)
            sys.exit(EXIT_SERVER)
        time.sleep(0.5)


def _plan_moves(kw: dict, change: Callable[[Any], Any], what: str, wait: bool,
                timeout: float) -> None:
    """Make a topology change that queues moves, say how many, and with
    ``wait`` follow them to the end."""
    def go(etcd: Any) -> None:
        topo = change(etcd)
        queued = ([topo.move] if topo.move else []) + topo.plan
        click.echo("flin: %s; %d move%s queued" % (what, len(queued),
                                                   "" if len(queued) == 1 else "s"))
        if wait:
            _wait_moves(etcd, kw["cluster"], timeout)
    _with_etcd(kw, go)


_wait_opt = click.option("--wait/--no-wait", default=True, show_default=True,
                         help="Wait for the moves, showing their progress.")
_timeout_opt = click.option("--timeout", default=3600.0, show_default=True,
                            type=click.FloatRange(1), help="Seconds --wait waits.")


@cluster.command("add-node")
@etcd_opts
@click.argument("node")
@_wait_opt
@_timeout_opt
def add_node(node: str, wait: bool, timeout: float, **kw: Any) -> None:
    """Make NODE a member and move shards onto it until they are even.

    Start the node first (`flin start --etcd ... --node NODE`), or after:
    the moves wait for it. Each move copies the shard while the cluster
    serves, then fences the source while it catches up and switches over."""
    from ..cluster.topology import add_node as add
    _plan_moves(kw, lambda etcd: add(etcd, kw["cluster"], node), "%s is a member" % node,
                wait, timeout)


@cluster.command()
@etcd_opts
@click.argument("node")
@_wait_opt
@_timeout_opt
def drain(node: str, wait: bool, timeout: float, **kw: Any) -> None:
    """Move every shard off NODE (to the least loaded members); it then
    leaves the members and can be stopped. Works while NODE is down only
    if it holds no shard (a shard's data is on its node)."""
    from ..cluster.topology import drain as drain_node
    _plan_moves(kw, lambda etcd: drain_node(etcd, kw["cluster"], node), "draining %s" % node,
                wait, timeout)


@cluster.command("replicas")
@etcd_opts
@click.argument("count", type=click.IntRange(1, 9))
def set_replicas(count: int, **kw: Any) -> None:
    """Keep COUNT copies of every shard: new followers go on the members
    holding the fewest and copy their primary while it serves; fewer copies
    drop followers, never a primary."""
    from ..cluster.replicas import set_replicas as change
    topo = _with_etcd(kw, lambda etcd: change(etcd, kw["cluster"], count))
    click.echo("flin: %d cop%s of each shard (epoch %d); `flin cluster status` shows them "
               "catch up" % (count, "y" if count == 1 else "ies", topo.epoch))


COMMANDS = [cluster]
