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
- when the view's placement changes (a shard moved off this node), that
  worker is stopped and not restarted.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
import uuid

from ..cluster import agent
from ..cluster.etcd import Etcd, EtcdError
from ..cluster.topology import Topology, TopologyError, join, registered_nodes
from ..config import Config
from ..nodeview import View
from ..ring import Ring
from .datadir import (
    MANIFEST, SUPERVISOR, StartError, load_manifest, missing_shards_message, shard_present,
    take, write_json,
)
from .supervisor import NOT_HERE, Child, Supervisor

log = logging.getLogger("flin.supervisor")

_AGENT_WAIT_S = 15.0      # how long a start waits for the agent's first view


class ClusterSupervisor(Supervisor):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.incarnation = ""
        self.local: set[int] = set()
        self.view = View(cfg.run_dir)
        self.agent = Child("agent", None, main=lambda: agent.run(self.cfg, self.incarnation))

    def _children(self) -> list[Child]:
        return [self.agent, *super()._children()]

    def ready_what(self) -> str:
        return ("node %s of cluster %s: %d of %d shards ready on %s"
                % (self.cfg.node, self.cfg.cluster, len(self.local), self.cfg.shards,
                   self.cfg.bind))

    # -- start ----------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        os.makedirs(cfg.data, exist_ok=True)
        owner = take(cfg, SUPERVISOR, "start another node on it", 30.0)
        try:
            os.makedirs(cfg.run_dir, mode=0o700, exist_ok=True)
            os.chmod(cfg.run_dir, 0o700)
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
            self._check_binds()
        except OSError as exc:
            owner.release()
            raise StartError("cannot prepare %s: %s" % (cfg.data, exc)) from None
        except BaseException:
            owner.release()
            raise
        self.owner = owner

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
        import plyvel
        cfg = self.cfg = dataclasses.replace(self.cfg, shards=topo.shards)
        self.ring = Ring(topo.shards)
        self.workers = [Child("shard-%d" % s, s) for s in range(topo.shards)]
        held = set(manifest.get("held") or [])
        local = set(topo.shards_of(cfg.node or ""))
        missing = [s for s in sorted(local) if not shard_present(cfg, s)
                   and (s in held or topo.opened[s])]
        if missing:
            raise StartError(missing_shards_message(cfg, missing))
        for s in sorted(local):
            if not shard_present(cfg, s):
                plyvel.DB(cfg.shard_dir(s), create_if_missing=True).close()
            held.add(s)
        manifest["held"] = sorted(held)
        write_json(os.path.join(cfg.data, MANIFEST), manifest)
        if any(not topo.opened[s] for s in local):
            def edit(t: Topology) -> None:
                for s in local:
                    t.opened[s] = True
            Topology.change(etcd, cfg.cluster or "", edit)
        self._set_local(local)

    def _check_binds(self) -> None:
        import zmq
        from ..router.sockets import check_ipc_free
        from .bindcheck import check_resp_free
        try:
            for endpoint in self.cfg.endpoints():
                check_ipc_free(endpoint)
            check_resp_free(self.cfg)
        except (zmq.ZMQError, ValueError) as exc:
            raise StartError(str(exc)) from None

    def _set_local(self, local: set[int]) -> None:
        self.local = local
        for c in self.workers:
            if c.shard in local:
                if c.broken == NOT_HERE:
                    c.broken, c.restart_at = None, 0.0
            elif c.broken is None:
                c.broken = NOT_HERE

    def start_children(self) -> None:
        """The agent first; the rest once it holds the lease and wrote the view."""
        os.environ.pop("FLIN_AGENT_VIEW", None)
        try:
            os.unlink(os.path.join(self.cfg.run_dir, "cluster.json"))
        except FileNotFoundError:
            pass
        self._fork(self.agent)
        deadline = time.monotonic() + _AGENT_WAIT_S
        while not (self.view.poll() and self.view.get("lease")):
            if self.view.data.get("lease"):
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

    # -- running --------------------------------------------------------------------
    def on_tick(self) -> None:
        if not self.view.poll():
            return
        me = self.cfg.node
        local = {s for s, n in enumerate(self.view.get("placement") or []) if n == me}
        if local == self.local:
            return
        for c in self.workers:
            if c.shard in self.local and c.shard not in local and c.pid is not None:
                log.info("shard %d now lives on node %s: stopping it here", c.shard,
                         (self.view.get("placement") or [])[c.shard])
                try:
                    os.kill(c.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self._set_local(local)
        self._write_state()

    def start_reshard(self) -> None:
        from .reshard import progress
        self.reshard_asked = False
        req = progress(self.cfg)
        self.refuse(req, "a cluster of many hosts cannot be resharded yet; move whole shards "
                         "between nodes with `flin cluster add-node` and `flin cluster drain`")

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            self._stop([self.agent], 5)   # last: it revokes the lease, and the node leaves
