"""A node's supervisor in cluster mode (``flin start --etcd ... --node NAME``).

The same supervisor as on one host (``supervisor.py``), with these changes:

- the shard count and where each shard lives come from the cluster's
  topology in etcd (``flin.cluster.topology``), read once at start; this
  node runs only the workers of the shards placed on it, and every router
  of every node links to them (the workers connect to all of them, over
  TCP, CURVE with ``--backend-keys``);
- its first child is the agent (``flin.cluster.agent``), the one process
  that talks to etcd afterwards; routers and workers start once the agent
  holds the node's lease and has written the node view;
- the data folder's manifest names the cluster and the node, and lists the
  shards whose LevelDB it holds (``held``): a shard placed here whose
  folder is missing is refused, never created empty, if this folder held
  it or the topology says it was opened somewhere (``opened``);
- when the topology's move names this node as its target, it runs the
  mover (``flin.cluster.mover``), again if it dies, until the move is done;
  the shard's worker starts here once the move is;
- when the view's placement changes (a shard moved off this node), that
  worker is stopped (it exits by itself once handed off: ``EXIT_MOVED``),
  not restarted, and its folder is dropped: the placement changes only
  once the target holds every entry.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import time
import uuid

from ..cluster import agent, mover
from ..cluster.etcd import Etcd, EtcdError
from ..cluster.replicas import term_prefix, terms
from ..cluster.topology import Topology, TopologyError, join, registered_nodes
from ..config import Config
from ..nodeview import View
from ..ring import Ring
from .datadir import (
    MANIFEST, StartError, load_manifest, missing_shards_message, shard_present, write_json,
)
from .supervisor import NOT_HERE, Child, Supervisor
from .. import shardworker
from ..shardworker.following import mark_new

log = logging.getLogger("flin.supervisor")

_AGENT_WAIT_S = 15.0      # how long a start waits for the agent's first view
IDLE = "no move for this node"   # the mover's ``broken`` while it has nothing to do


def new_copy(path: str, follower: bool) -> None:
    """A new, empty shard folder; a ``follower`` one holds no voting copy
    until its first snapshot copy from the primary (``shardworker.following``)."""
    import plyvel
    db = plyvel.DB(path, create_if_missing=True)
    try:
        if follower:
            mark_new(db)
    finally:
        db.close()


class ClusterSupervisor(Supervisor):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.incarnation = ""
        self.local: set[int] = set()
        self.gone: set[int] = set()               # shards handed off, their folders to drop
        self.handed: dict[int, int] = {}          # shard -> the view's epoch at its hand-off
        self.view = View(cfg.run_dir)
        self.agent = Child("agent", None, main=lambda: agent.run(self.cfg, self.incarnation))
        self.mover_for: str | None = None         # the id of the move the mover is for
        self.mover = Child("mover", None, main=lambda: mover.run(self.cfg, self.mover_for))
        self.mover.broken = IDLE

    def _children(self) -> list[Child]:
        return [self.agent, self.mover, *super()._children()]

    def ready_what(self) -> str:
        return ("node %s of cluster %s: %d of %d shards ready on %s"
                % (self.cfg.node, self.cfg.cluster, len(self.local), self.cfg.shards,
                   self.cfg.bind))

    # -- start ----------------------------------------------------------------------
    def prepare_folder(self) -> None:
        """With the lock held: the folder's manifest, the topology from etcd
        (joining its members), this node's shards."""
        cfg = self.cfg
        manifest = self._manifest()
        self.incarnation = manifest["incarnation"]
        etcd = Etcd(agent.options(cfg))
        try:
            topo = join(etcd, cfg.cluster or "", cfg.node or "")
            live = registered_nodes(etcd, cfg.cluster or "").get(cfg.node or "")
            if live is not None and live.get("incarnation") != self.incarnation:
                raise StartError(
                    "node %s of cluster %s is already up (its lease is held; supervisor "
                    "pid %s on %s, at %s): give this one another --node"
                    % (cfg.node, cfg.cluster, live.get("supervisor"), live.get("host"),
                       live.get("advertise")))
            self._open_shards(etcd, topo, manifest)
        except (EtcdError, TopologyError, ValueError) as exc:
            raise StartError(str(exc)) from None
        finally:
            etcd.close()

    def _manifest(self) -> dict:
        cfg = self.cfg
        manifest = load_manifest(cfg)
        if manifest is None:
            if any(n.startswith("shard-") for n in os.listdir(cfg.data)):
                raise StartError("%s holds shard folders but no %s; refusing to guess "
                                 "its layout" % (cfg.data, MANIFEST))
            manifest = {"format": 1, "cluster": cfg.cluster, "node": cfg.node,
                        "incarnation": uuid.uuid4().hex, "held": [], "created": time.time()}
            write_json(os.path.join(cfg.data, MANIFEST), manifest)
        if "cluster" not in manifest:
            raise StartError("%s is a one-host data folder (%s shards): start it without "
                             "--etcd, or give this node an empty folder"
                             % (cfg.data, manifest.get("shards")))
        if (manifest["cluster"], manifest["node"]) != (cfg.cluster, cfg.node):
            raise StartError("%s is node %s of cluster %s, not node %s of %s"
                             % (cfg.data, manifest["node"], manifest["cluster"], cfg.node,
                                cfg.cluster))
        return manifest

    def _open_shards(self, etcd: Etcd, topo: Topology, manifest: dict) -> None:
        """The shards placed here: check each one's LevelDB, creating those
        never opened anywhere; then record them (here, then in etcd)."""
        cfg = self.cfg = dataclasses.replace(self.cfg, shards=topo.shards)
        self.ring = Ring(topo.shards)
        self.workers = [Child("shard-%d" % s, s) for s in range(topo.shards)]
        held = set(manifest.get("held") or [])
        local = set(topo.shards_of(cfg.node or ""))
        if topo.move is not None and topo.move["to"] == cfg.node:
            local.discard(topo.move["shard"])     # the mover's, until the move is done
        missing = [s for s in sorted(local) if not shard_present(cfg, s)
                   and (s in held or topo.opened[s]) and not topo.replicas]
        if missing:
            raise StartError(missing_shards_message(cfg, missing))
        had = terms(etcd.get_prefix(term_prefix(cfg.cluster or ""))[0], cfg.cluster or "") \
            if topo.replicas else {}
        for s in sorted(local):
            if not shard_present(cfg, s):
                # a copy missing from a shard opened before (a new copy, or a
                # wiped one) starts empty, no voter, and copies its primary's
                new_copy(cfg.shard_dir(s), follower=had.get(s, 0) > 0 or topo.opened[s])
            held.add(s)
        placed = topo.placement
        # held here, placed elsewhere: moved away while this node was down (the
        # placement changes only once the target holds every entry)
        self.gone = {s for s in held - local if placed[s] != cfg.node}
        manifest["held"] = sorted(held)
        write_json(os.path.join(cfg.data, MANIFEST), manifest)
        if any(not topo.opened[s] for s in local):
            def edit(t: Topology) -> None:
                for s in local:
                    t.opened[s] = True
            Topology.change(etcd, cfg.cluster or "", edit)
        self._set_local(local)

    def _set_local(self, local: set[int]) -> None:
        epoch = self.view.get("epoch") or 0
        local = {s for s in local if epoch > self.handed.get(s, -1)}   # not on a stale view
        self.local = local
        for c in self.workers:
            if c.shard in local:
                if c.broken == NOT_HERE:
                    c.broken, c.restart_at = None, 0.0
            elif c.broken is None:
                c.broken = NOT_HERE

    def start_children(self) -> None:
        """The agent first; the rest once it holds the lease and wrote the view."""
        try:
            os.unlink(os.path.join(self.cfg.run_dir, "cluster.json"))
        except FileNotFoundError:
            pass
        self._fork(self.agent)
        deadline = time.monotonic() + _AGENT_WAIT_S
        while True:
            self.view.poll()
            if self.view.get("lease"):
                break
            self._reap()
            if self.agent.pid is None:
                raise StartError("the node's agent died before it reached etcd (see the log)")
            if time.monotonic() > deadline:
                why = (self.view.get("etcd") or {}).get("error") or "no answer"
                raise StartError("the node's agent could not take a lease in etcd in %.0fs: %s"
                                 % (_AGENT_WAIT_S, why))
            time.sleep(0.05)
        for child in super()._children():
            if child.broken is None:
                self._fork(child)
        self.view.stamp = None                    # (the tick acts on the first view too)

    # -- running --------------------------------------------------------------------
    def on_tick(self) -> None:
        if self.view.poll():
            self._follow_view()
        if self.gone:
            self._drop_moved_out()

    def _follow_view(self) -> None:
        me = self.cfg.node
        placement = self.view.get("placement") or []
        move = self.view.get("move")
        reps = self.view.get("replicas") or []
        local = {s for s, n in enumerate(placement) if n == me} if not reps else \
            {s for s, copies in enumerate(reps) if me in copies}
        for s in sorted(local - self.local):
            if reps and not shard_present(self.cfg, s):   # a copy added here
                new_copy(self.cfg.shard_dir(s), follower=True)
        mine = move is not None and move["to"] == me
        if self.mover.pid is not None and (not mine or move.get("id") != self.mover_for):
            log.info("the move the mover was for is no longer this node's: stopping it")
            try:
                os.kill(self.mover.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if mine:
            local.discard(move["shard"])          # the mover's, until the move is done
            if self.mover.broken == IDLE or self.mover_for != move.get("id"):
                self.mover_for = move.get("id")
                self.mover.broken = None        # (at its restart_at: not in a burst)
        elif self.mover.broken is None and self.mover.pid is None:
            self.mover.broken = IDLE
        if local == self.local:
            return
        for c in self.workers:
            if c.shard in self.local and c.shard not in local:
                if reps or c.shard < len(placement) and placement[c.shard] != me:
                    self.gone.add(c.shard)      # dropped once its move is cleared
                if c.pid is not None:
                    log.info("shard %d now lives on node %s: stopping it here", c.shard,
                             placement[c.shard] if c.shard < len(placement) else "?")
                    try:
                        os.kill(c.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        self._set_local(local)
        self._record_held()
        self._write_state()

    def _drop_moved_out(self) -> None:
        """Delete the folders of shards another node has now (once their
        worker has exited): the placement names the target only after it
        holds every entry."""
        move = self.view.get("move") or {}
        placement = self.view.get("placement") or []
        reps = self.view.get("replicas") or []
        for s in sorted(self.gone):
            if self.workers[s].pid is not None or move.get("shard") == s \
                    or s >= len(placement) or (placement[s] == self.cfg.node if not reps
                                               else self.cfg.node in reps[s]):
                continue                          # not until the target serves it
            self.gone.discard(s)
            path = self.cfg.shard_dir(s)
            if os.path.exists(path):
                trash = "%s.moved-%d" % (path, time.time_ns())
                try:
                    os.rename(path, trash)
                except OSError as exc:
                    log.error("shard %d: cannot drop %s (%s); trying again", s, path, exc)
                    self.gone.add(s)
                    continue
                shutil.rmtree(trash, ignore_errors=True)
                log.info("shard %d: dropped this node's copy (%s)", s, path)
            self._record_held()

    def _record_held(self) -> None:
        manifest = load_manifest(self.cfg) or {}
        held = sorted(s for s in range(self.cfg.shards) if s in self.local or
                      (shard_present(self.cfg, s) and s not in self.gone
                       and s in (manifest.get("held") or [])))
        if manifest.get("held") != held:
            manifest["held"] = held
            write_json(os.path.join(self.cfg.data, MANIFEST), manifest)

    def _died(self, child: Child, status: int) -> None:
        if child is self.mover and os.WIFEXITED(status) and os.WEXITSTATUS(status) in (
                0, mover.EXIT_FAILED):
            child.pid = None
            child.broken = IDLE      # the view says whether another move is ours
            child.restart_at = time.monotonic() + 0.5
            self.view.stamp = None
            return
        if child.shard is not None and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) == shardworker.EXIT_MOVED:
            # handed off: only a view of a later epoch (a move back) runs it here again
            self.handed[child.shard] = self.view.get("epoch") or 0
            child.pid = None
            child.broken = NOT_HERE
            self.local.discard(child.shard)
            self.gone.add(child.shard)
            return
        super()._died(child, status)
    def start_reshard(self) -> None:
        from .reshard import progress
        self.reshard_asked = False
        req = progress(self.cfg)
        self.refuse(req, "a cluster of many hosts cannot be resharded yet; move whole shards "
                         "between nodes with `flin cluster add-node` and `flin cluster drain`")

    def shutdown(self) -> None:
        try:
            self._stop([self.mover], 5)   # a copy cut short starts over at the next start
            super().shutdown()
        finally:
            self._stop([self.agent], 5)   # last: it revokes the lease, and the node leaves
