"""What ``flin cluster status`` shows of replicas: each shard's primary and
term, and how far behind its primary each copy is (from the positions every
node's agent publishes each second: ``flin.cluster.election``)."""
from __future__ import annotations

import json
from typing import Any


def replica_status(etcd: Any, topo: Any) -> dict:
    """The replicas part of the status: {} for a cluster of single copies."""
    if not topo.replicas:
        return {}
    from ..cluster.replicas import positions_prefix, primaries, primary_prefix
    held, _ = etcd.get_prefix(primary_prefix(topo.cluster))
    prim = primaries(held, topo.cluster)
    got, _ = etcd.get_prefix(positions_prefix(topo.cluster))
    where: dict[str, dict] = {}
    for key, (value, _lease) in got.items():
        try:
            where[key[len(positions_prefix(topo.cluster)):].decode()] = json.loads(value)
        except ValueError:
            continue
    shards = []
    for s, copies in enumerate(topo.replicas):
        p = prim.get(s) or {}
        top = ((where.get(p.get("node") or "") or {}).get(str(s)) or {}).get("seq")
        row: dict[str, Any] = {"shard": s, "primary": p.get("node"), "term": p.get("term")}
        row["copies"] = {n: None if pos is None else {
            **pos, "lag": None if top is None else max(0, top - pos["seq"])}
            for n in copies for pos in [(where.get(n) or {}).get(str(s))]}
        shards.append(row)
    return {"acks": topo.acks, "replica_shards": shards}


def replica_lines(st: dict) -> list[str]:
    """One line per shard: its primary, term, and each copy's lag in batches."""
    out = []
    for row in st.get("replica_shards") or []:
        parts = []
        for n, pos in row["copies"].items():
            if n == row["primary"]:
                continue
            if pos is None:
                parts.append("%s ?" % n)
            elif not pos.get("voter", True):
                parts.append("%s copying" % n)
            else:
                parts.append("%s lag %s" % (n, "?" if pos["lag"] is None else pos["lag"]))
        out.append("shard %-4d primary %-12s term %-4s followers %s"
                   % (row["shard"], row["primary"] or "NONE", row["term"] or "-",
                      ", ".join(parts) or "-"))
    return out
