"""The node's agent: the one process of a node that talks to etcd.

A child of the node's supervisor (``flin.supervisor.cluster``). It

- holds the node's lease (``cfg.lease_ttl`` s, renewed every third of it)
  and keeps the node's registration on it (``topology.node_key``: where the
  node's routers listen for clients and for shard workers), so that the
  node's death removes it;
- watches ``/flin/<cluster>/`` (a watch wakes it at once; it also reads
  every ``_POLL_S``, so a watch lost with its etcd endpoint costs no more
  than that) and writes what it learned to the node view
  (``flin.nodeview``), which the supervisor, routers and workers read;
- sets the view's write deadline, the lease fence: a renewal sent at ``t``
  keeps the lease until at least ``t + ttl`` in etcd, so the node's shards
  take writes until ``t + ttl - margin``. When etcd cannot be reached, the
  deadline is extended only while every other node that was alive answers
  that it cannot reach etcd either (etcd is down, not this node cut off:
  then nobody can be given this node's shards); a node cut off from etcd
  and from its peers stops taking writes before its lease can expire.

With etcd down the view keeps the last topology, marked ``etcd.ok`` False
with the reason; topology changes (``flin cluster ...``) fail saying why.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Any

from .. import nodeview
from ..config import Config
from .election import publish_positions, run_elections
from .etcd import Etcd, EtcdError, EtcdOptions
from .replicas import primaries, terms
from .topology import (
    Topology, TopologyError, fail_move, node_key, nodes_prefix, root, topology_key,
)

log = logging.getLogger("flin.cluster")

_POLL_S = 0.5           # between reads of the topology, watch or not
_PEER_TIMEOUT_S = 0.5   # a peer's answer to "do you see etcd?"
_POSITIONS_S = 1.0      # between publications of where this node's copies stand


def options(cfg: Config) -> EtcdOptions:
    """The etcd options of ``cfg`` (``--etcd``, ``--etcd-user`` ...)."""
    password = None
    if cfg.etcd_password_file:
        with open(cfg.etcd_password_file) as f:
            password = f.readline().rstrip("\r\n")
    # a call that hangs (etcd stopped, packets dropped) must leave the agent
    # time to renew, or to ask its peers, well within the write deadline
    return EtcdOptions.parse(cfg.etcd or "", user=cfg.etcd_user, password=password,
                             ca=cfg.etcd_ca, cert=cfg.etcd_cert, key=cfg.etcd_key,
                             timeout=min(2.0, cfg.lease_ttl / 5))


def margin(ttl: int) -> float:
    """How long before its lease could expire a node stops taking writes."""
    return max(1.0, ttl * 0.25)


def registration(cfg: Config, incarnation: str) -> dict[str, Any]:
    return {"routers": cfg.endpoints(), "backends": cfg.backends(),
            "advertise": cfg.advertise, "resp": cfg.resp, "incarnation": incarnation,
            "repl_port": cfg.repl_port,
            "supervisor": os.getppid(), "host": os.uname().nodename}


class Agent:
    def __init__(self, cfg: Config, incarnation: str) -> None:
        self.cfg, self.incarnation = cfg, incarnation
        self.etcd = Etcd(options(cfg))
        self.ttl = cfg.lease_ttl
        self.lease = 0
        self.renewed_at: float | None = None    # when the last renewal that worked was sent
        self.refresh_at = 0.0
        self.writable_until = 0.0
        self.topology: dict[str, Any] | None = None
        self.nodes: dict[str, dict] = {}
        self.primaries: dict[int, dict] = {}    # replicas: shard -> {"node", "term"}
        self.terms: dict[int, int] = {}         # replicas: shard -> its last term
        self.positions_at = 0.0
        self.orphaned: dict[int, float] = {}    # a new shard's first sight, no primary yet
        self.last_seen: dict[str, dict] = {}    # every node's last registration seen
        self.etcd_state: dict[str, Any] = {"ok": False, "error": "not reached yet",
                                           "since": time.time()}
        self.written: str | None = None
        self.stopping = False
        self.wake = threading.Event()
        self.renewing = threading.Event()       # set: the renewing thread stops
        self.watching: Any = None               # the watch's cancel function
        self.watch_rev = 0
        self.failsafe_ok_at = 0.0
        self.target_gone_at: float | None = None   # when a move's target was first seen down
        self.no_fence = os.environ.get("FLIN_TEST_NO_LEASE_FENCE") == "1"   # tests break it

    # -- etcd ------------------------------------------------------------------------
    def keep_lease(self, now: float) -> None:
        if self.lease and now < self.refresh_at:
            return
        sent = time.monotonic()
        if self.lease:
            if self.etcd.refresh(self.lease) > 0:
                self.renewed_at = max(self.renewed_at or 0.0, sent)
                self.refresh_at = sent + self.ttl / 3
                return
            log.warning("node %s: its lease expired in etcd; registering anew", self.cfg.node)
        self.lease = self.etcd.grant(self.ttl)
        self.etcd.put(node_key(self.cfg.cluster or "", self.cfg.node or ""),
                      json.dumps(registration(self.cfg, self.incarnation)).encode(),
                      lease=self.lease)
        self.renewed_at, self.refresh_at = sent, sent + self.ttl / 3

    def expire_dead_target(self) -> None:
        """A move in ``copy`` whose target has had no registration for three
        lease TTLs is called off (any node's agent may: the compare-and-swap
        makes it once), so that its fenced source serves again."""
        move = (self.topology or {}).get("move")
        if not move or move.get("state") != "copy" or move.get("to") in self.nodes:
            self.target_gone_at = None
            return
        now = time.monotonic()
        if self.target_gone_at is None:
            self.target_gone_at = now
        elif now - self.target_gone_at > 3 * self.ttl:
            why = "its target %s is down" % move.get("to")
            log.warning("node %s: moving shard %s: %s; calling the move off", self.cfg.node,
                        move.get("shard"), why)
            try:
                Topology.change(self.etcd, self.cfg.cluster or "",
                                lambda t: fail_move(t, move, why))
            except TopologyError as exc:
                log.warning("node %s: %s", self.cfg.node, exc)
            self.target_gone_at = None

    def read(self) -> None:
        cluster = self.cfg.cluster or ""
        got, rev = self.etcd.get_prefix(root(cluster))
        topo = got.get(topology_key(cluster))
        if topo is not None:
            self.topology = json.loads(topo[0])
        prefix = nodes_prefix(cluster)
        nodes = {}
        for key, (value, _lease) in got.items():
            if key.startswith(prefix):
                try:
                    nodes[key[len(prefix):].decode()] = json.loads(value)
                except ValueError:
                    continue
        self.nodes = nodes
        self.primaries = primaries(got, cluster)
        self.terms = terms(got, cluster)
        self.last_seen.update(nodes)
        if self.watching is None or rev > self.watch_rev + 1000:
            self.start_watch(rev)

    def stop_watch(self) -> None:
        if self.watching is not None:
            try:
                self.watching()
            except Exception:        # (its stream may be gone with etcd)
                pass
        self.watching = None

    def start_watch(self, rev: int) -> None:
        self.stop_watch()
        try:
            events, cancel = self.etcd.watch_prefix(root(self.cfg.cluster or ""), rev + 1)
        except Exception as exc:      # the poll goes on meanwhile
            log.debug("watch: %s", exc)
            return
        self.watching, self.watch_rev = cancel, rev

        def pump() -> None:
            try:
                for _ in events:
                    self.wake.set()
            except Exception:
                pass
        threading.Thread(target=pump, daemon=True, name="flin-watch").start()

    # -- the fence ---------------------------------------------------------------------
    def peers_lost_etcd(self) -> bool:
        """Whether every other node that was alive says it cannot reach etcd."""
        from ..client import Client
        from ..errors import FlinError
        members = set((self.topology or {}).get("nodes") or []) | set(self.nodes)
        for name in sorted(members - {self.cfg.node}):
            reg = self.nodes.get(name) or self.last_seen.get(name) or {}
            routers = reg.get("routers") or []
            if not routers:              # a member we cannot ask may have etcd
                return False
            try:
                with Client(routers[0], timeout=_PEER_TIMEOUT_S, retries=0,
                            discover=False) as peer:
                    seen = peer.node()
            except (FlinError, OSError, ValueError):
                return False
            if not seen or (seen.get("etcd") or {}).get("ok", True):
                return False
        return True

    def fence(self, now: float) -> None:
        if self.no_fence:
            self.writable_until = now + 3600.0
            return
        if self.renewed_at is not None:
            self.writable_until = max(self.writable_until,
                                      self.renewed_at + self.ttl - margin(self.ttl))
        # (not with replicas: a primary going on past its lease in etcd could
        # acknowledge writes that a copy elected when etcd is back never saw)
        if not self.etcd_state["ok"] and not (self.topology or {}).get("replicas"):
            asked = time.monotonic()
            try:
                confirmed = self.peers_lost_etcd()
            except Exception:             # (an odd answer counts as "no")
                log.exception("node %s: asking the other nodes about etcd", self.cfg.node)
                confirmed = False
            if confirmed:
                # etcd is down for everyone: nobody can be handed our shards
                self.writable_until = asked + self.ttl - margin(self.ttl)
                if now - self.failsafe_ok_at > 10:
                    log.warning("node %s: etcd is down for every node: still taking writes",
                                self.cfg.node)
                self.failsafe_ok_at = now

    # -- the view ----------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        me = self.cfg.node
        t = self.topology or {}
        order = list(t.get("nodes") or [])
        order += sorted(n for n in self.nodes if n not in order)
        nodes: dict[str, dict[str, Any]] = {}
        routers, backends = self.cfg.endpoints(), self.cfg.backends()
        members = set(t.get("nodes") or [])
        for n in order:
            reg = self.nodes.get(n) or self.last_seen.get(n) or {}
            alive = n in self.nodes
            nodes[n] = {"alive": alive, "routers": reg.get("routers") or [],
                        "backends": reg.get("backends") or [], "advertise": reg.get("advertise"),
                        "repl_port": reg.get("repl_port")}
            if n == me:
                continue
            if alive:          # clients are told of the routers that are up
                routers += [e for e in reg.get("routers") or [] if e not in routers]
            if alive or n in members:
                # the workers stay linked to a member's routers while its lease
                # lapses: a blip of etcd's must not cut the data path
                backends += [e for e in reg.get("backends") or [] if e not in backends]
        return {"me": me, "cluster": self.cfg.cluster, "epoch": t.get("epoch"),
                "shards": t.get("shards"), "placement": t.get("placement") or [],
                "move": t.get("move"), "draining": t.get("draining") or [],
                "outcomes": t.get("outcomes") or {},
                "nodes": nodes, "routers": routers, "backends": backends,
                "etcd": self.etcd_state, "writable_until": self.writable_until,
                "lease": self.lease, "ttl": self.ttl,
                "replicas": t.get("replicas") or [], "acks": t.get("acks") or "majority",
                "primaries": {str(s): [p.get("node"), p.get("term")]
                              for s, p in self.primaries.items()}}

    def publish(self) -> None:
        view = self.view()
        text = json.dumps(view, sort_keys=True)
        if text != self.written:
            nodeview.write(self.cfg.run_dir, view)
            self.written = text

    # -- the loop ----------------------------------------------------------------------
    def step(self) -> None:
        now = time.monotonic()
        try:
            self.keep_lease(now)
            self.read()
            self.expire_dead_target()
            if run_elections(self):      # the workers learn it at once, not a turn later
                self.fence(time.monotonic())
                self.publish()
            if now >= self.positions_at:
                self.positions_at = now + _POSITIONS_S
                publish_positions(self)
            if not self.etcd_state["ok"]:
                log.info("node %s: reached etcd", self.cfg.node)
                self.etcd_state = {"ok": True, "error": None, "since": time.time()}
        except (EtcdError, ValueError) as exc:
            if self.etcd_state["ok"] or self.etcd_state.get("error") != str(exc):
                log.warning("node %s: %s; serving on the last topology known", self.cfg.node, exc)
                self.etcd_state = {"ok": False, "error": str(exc), "since": time.time()}
            self.stop_watch()
        self.fence(time.monotonic())
        self.publish()

    def renew(self) -> None:
        """A thread of its own that only renews the lease (its own etcd
        client): the loop's slower work (elections, positions, a slow etcd
        read) never holds a renewal back past the write fence's margin."""
        etcd = Etcd(options(self.cfg))
        while not self.stopping:
            lease = self.lease
            if lease:
                sent = time.monotonic()
                try:
                    if etcd.refresh(lease) > 0 and lease == self.lease:
                        self.renewed_at = max(self.renewed_at or 0.0, sent)
                        if not self.no_fence:   # (the loop publishes it)
                            self.writable_until = max(
                                self.writable_until, sent + self.ttl - margin(self.ttl))
                except EtcdError:
                    pass                  # the loop sees etcd's state and says so
            self.renewing.wait(self.ttl / 4)
        etcd.close()

    def run(self) -> None:
        renewer = threading.Thread(target=self.renew, daemon=True, name="flin-renew")
        renewer.start()
        while not self.stopping:
            self.step()
            self.wake.wait(_POLL_S)
            self.wake.clear()
        self.renewing.set()
        self.stop_watch()
        if self.lease:                  # the node leaves now, not a lease later
            try:
                self.etcd.revoke(self.lease)
            except EtcdError as exc:
                log.info("node %s: lease not revoked (%s); it expires in %d s",
                         self.cfg.node, exc, self.ttl)
        self.etcd.close()


def run(cfg: Config, incarnation: str) -> int:
    """The agent process's main (the supervisor forked it); its exit code."""
    agent = Agent(cfg, incarnation)

    def on_term(signum: int, frame: Any) -> None:
        agent.stopping = True
        agent.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    agent.run()
    return 0


__all__ = ["Agent", "Topology", "margin", "options", "registration", "run"]
