"""``flin cluster ...``: a cluster of many hosts, through its topology in etcd
(``flin.cluster``): create, status, add-node, drain."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, TypeVar

import click

from .common import EXIT_SERVER, EXIT_UNREACHABLE, EXIT_USAGE, etcd_config, etcd_opts

T = TypeVar("T")


def _with_etcd(kw: dict, fn: Callable[[Any], T]) -> T:
    """Run ``fn(etcd)``; etcd failures and refusals become one line and an exit code."""
    from ..cluster.agent import options
    from ..cluster.etcd import Etcd, EtcdError
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
        sys.exit(EXIT_UNREACHABLE)
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
def create(shards: int, nodes: str, **kw: Any) -> None:
    """Write a new cluster's first topology to etcd."""
    from ..cluster.topology import create as create_topology
    names = [n.strip() for n in nodes.split(",") if n.strip()]
    topo = _with_etcd(kw, lambda etcd: create_topology(etcd, kw["cluster"], shards, names))
    click.echo("flin: cluster %s created: %d shards%s, epoch %d"
               % (topo.cluster, topo.shards,
                  " on %s" % ", ".join(names) if names else " (the first node to start takes them)",
                  topo.epoch))


def _status(etcd: Any, name: str) -> dict:
    from ..cluster.topology import Topology, registered_nodes
    topo, rev = Topology.read(etcd, name)
    live = registered_nodes(etcd, name)
    nodes = {}
    for n in list(topo.nodes) + sorted(set(live) - set(topo.nodes)):
        reg = live.get(n) or {}
        nodes[n] = {"alive": n in live, "member": n in topo.nodes,
                    "draining": n in topo.draining, "advertise": reg.get("advertise"),
                    "routers": reg.get("routers") or [], "shards": topo.shards_of(n)}
    return {"cluster": name, "shards": topo.shards, "epoch": topo.epoch, "revision": rev,
            "nodes": nodes, "placement": topo.placement, "move": topo.move,
            "unplaced": [s for s, p in enumerate(topo.placement) if p is None]}


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
        m = st["move"]
        if m:
            click.echo("moving shard %s from %s to %s: %s%s"
                       % (m.get("shard"), m.get("from"), m.get("to"), m.get("state"),
                          ", %.1f MB copied" % (m["bytes"] / 1e6) if m.get("bytes") else ""))
    if any(n["shards"] and not n["alive"] for n in st["nodes"].values()):
        sys.exit(EXIT_SERVER)


COMMANDS = [cluster]
