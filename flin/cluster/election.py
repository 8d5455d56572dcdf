"""Who becomes a shard's primary when it has none: the agent's part of failover.

etcd decides (``replicas.elect``: a transaction that checks the primary key
is gone and bumps the term); this module only decides whether this node may
try. For each shard it holds a copy of and that has no primary key, the
agent asks every live copy where it stands (``following.ask_positions``,
straight to their workers, all shards at once), and tries only if

- a majority of the shard's copies answered as voters (a copy still copying
  a snapshot is none), so the answers include at least one copy of every
  write acknowledged by a majority (``--acks majority``); a shard that never
  had a primary (term 0) needs one voter; and
- its own copy is at least as far as every voter that answered, comparing
  (term of the last batch, seq) as Raft does.

The positions are asked after the old primary's lease expired, and a primary
stops acknowledging before that (``agent.margin``), so no acknowledged write
can reach a copy after it answered.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from ..shardworker.following import ask_positions
from .etcd import EtcdError
from .replicas import elect, positions_prefix

log = logging.getLogger("flin.cluster")

ASK_S = 0.3              # how long the copies have to say where they stand
_BLIND = os.environ.get("FLIN_TEST_ELECT_BLIND") == "1"   # tests: elect without the checks


def run_elections(agent: Any) -> dict[int, int]:
    """Try to become primary of each shard here that has none; ``{shard: term}`` won."""
    cfg = agent.cfg
    me, cluster = cfg.node or "", cfg.cluster or ""
    reps = (agent.topology or {}).get("replicas") or []
    orphans = [s for s, copies in enumerate(reps) if me in copies and s not in agent.primaries]
    if not orphans or not agent.lease:
        return {}
    targets = {}
    for s in orphans:
        for n in reps[s]:
            reg = agent.nodes.get(n)          # the live ones (a dead node answers nothing)
            if reg and reg.get("advertise") and reg.get("repl_port"):
                targets[(s, n)] = cfg.repl_endpoint(s, reg["advertise"], int(reg["repl_port"]))
    answers = ask_positions(cfg, targets, ASK_S)
    won = {}
    now = time.monotonic()
    for s in orphans:
        voters = {n: (int(p[1]), int(p[2])) for (shard, n), p in answers.items()
                  if shard == s and p[3]}
        first = reps[s][0]
        if agent.terms.get(s, 0) == 0 and first != me and not _BLIND and (
                first in voters or (answers.get((s, first)) is None
                                    and now - agent.orphaned.setdefault(s, now) <= agent.ttl)):
            continue      # a new shard's first primary is its first copy, if it comes up
        # a shard that never had a primary acknowledged nothing as replicated
        # (new, or kept as one copy until now): any voter will do
        quorum = len(reps[s]) // 2 + 1 if agent.terms.get(s, 0) > 0 else 1
        if not _BLIND and (me not in voters or len(voters) < quorum
                           or any(pos > voters[me] for pos in voters.values())):
            continue
        try:
            term = elect(agent.etcd, cluster, s, me, agent.lease,
                         blind=agent.terms.get(s, 0) if _BLIND else None)
        except EtcdError as exc:
            log.warning("node %s: electing shard %d: %s", me, s, exc)
            continue
        if term is not None:
            log.warning("node %s: primary of shard %d, term %d (at term %d seq %d; "
                        "voters %s)", me, s, term, *voters.get(me, (0, 0)),
                        ", ".join(sorted(voters)))
            agent.primaries[s] = {"node": me, "term": term}
            won[s] = term
    return won


def publish_positions(agent: Any) -> None:
    """Where this node's copies stand, in etcd for ``flin cluster status``
    (each copy's lag behind its primary), on the node's lease."""
    cfg = agent.cfg
    me = cfg.node or ""
    reps = (agent.topology or {}).get("replicas") or []
    local = {s: cfg.repl_endpoint(s) for s, copies in enumerate(reps) if me in copies}
    if not local or not agent.lease:
        return
    answers = ask_positions(cfg, local, ASK_S)
    doc = {str(s): {"term": p[0], "last_term": p[1], "seq": p[2], "voter": p[3], "role": p[4]}
           for s, p in answers.items()}
    agent.etcd.put(positions_prefix(cfg.cluster or "") + me.encode(),
                   json.dumps(doc, sort_keys=True).encode(), lease=agent.lease)


__all__ = ["publish_positions", "run_elections"]
