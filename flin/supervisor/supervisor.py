"""The supervisor of one host's processes: starts, watches, restarts and
stops the router, the shard workers and the metrics exporter.

``Supervisor.run()`` is ``flin start``. It checks the manifest, builds the
ring once, forks the router and one worker per shard (fork shares the
imported code between 65 processes), prints one line when every shard
answers, restarts any child that dies (with backoff, logging why), and on
SIGTERM/SIGINT stops the router first (it answers what is in flight), then
the workers (each closes its LevelDB), waits for all of them and exits 0.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import time
from typing import Any, Callable

import zmq

from .. import router, shardworker
from ..router.sockets import check_ipc_free
from ..config import Config
from ..ring import Ring
from . import metrics, processes
from .bindcheck import check_resp_free
from .datadir import (
    SUPERVISOR, Owner, StartError, check_or_write_manifest, missing_shards_message,
    shard_present, take, write_json,
)
from .reshard import RETIRED, Reshards, recover

log = logging.getLogger("flin.supervisor")

_BACKOFF_MAX_S = 30.0     # longest wait before restarting a child that keeps dying
_STABLE_S = 10.0          # a child up this long has its backoff reset
_PREDECESSOR_WAIT_S = 30.0   # how long a start waits for an earlier cluster's processes to exit
_LINK_GRACE_S = 3.0       # a router up this long must have its worker link in place
NOT_HERE = "placed on another node"   # cluster mode: a Child's ``broken``, not started here


class Child:
    """One supervised process: a router (``router`` its id), a shard worker
    (``shard``) or the metrics exporter."""

    def __init__(self, name: str, shard: int | None, router: int | None = None,
                 main: Callable[[], int] | None = None) -> None:
        self.name, self.shard, self.router = name, shard, router
        self.main = main                 # another role's main (cluster mode's agent)
        self.pid: int | None = None
        self.started = 0.0
        self.deaths = 0
        self.restart_at = 0.0
        self.broken: str | None = None   # why it is no longer restarted
        self.ready_r: int | None = None  # a router's pipe: it writes once every shard is up
        self.link_alarm = 0.0            # a router: when it was last restarted for its link


class Supervisor(Reshards):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ring = Ring(cfg.shards)
        self.epoch = 1                      # the manifest's, once read (``prepare``)
        self.init_reshards()
        self.routers = [Child("router" if cfg.routers == 1 else "router-%d" % i, None, i)
                        for i in range(cfg.routers)]
        self.workers = [Child("shard-%d" % s, s) for s in range(cfg.shards)]
        self.metrics = Child("metrics", None) if cfg.metrics_port else None
        self.on_ready: Callable[[str], None] | None = None   # called with the ready line
        self.stopping = False
        self.announced = False
        self.ready: set[int] = set()        # routers that have reported every shard up
        self.owner: Owner | None = None     # the data folder's lock, held for our whole life
        self.next_check = 0.0

    # -- processes ----------------------------------------------------------------
    def _new_child(self, name: str, shard: int | None) -> Child:
        return Child(name, shard)

    def _fork(self, child: Child) -> None:
        ready_w = None
        if child.router is not None and not self.announced:  # a (new) router reports readiness
            if child.ready_r is not None:
                os.close(child.ready_r)
            child.ready_r, ready_w = os.pipe()
        pid = processes.fork_child()
        if pid == 0:  # the child: never returns into the supervisor's code
            code = 1
            try:
                processes.become_child("flin-" + child.name)
                for r in self.routers:
                    if r.ready_r is not None:
                        os.close(r.ready_r)
                if child.main is not None:
                    code = child.main()
                elif child is self.metrics:
                    code = metrics.run(self.cfg)
                elif child is self.migrator:
                    code = self.run_migrator()
                elif child.router is not None:
                    ring, epoch = self.topology()
                    code = router.run(dataclasses.replace(self.cfg, router_id=child.router),
                                      ring, ready_w, epoch, self.slots())
                elif child.shard is not None:
                    code = shardworker.run(self.cfg, child.shard, *self.topology())
            except BaseException:
                log.exception("%s crashed", child.name)
            finally:
                logging.shutdown()
                os._exit(code)
        if ready_w is not None:
            os.close(ready_w)
        child.pid, child.started = pid, time.monotonic()

    def _write_state(self) -> None:
        """What only the supervisor knows (deaths, broken shards), for ``flin status``
        (the router reads it from ``cfg.children_path``)."""
        def one(c: Child) -> dict:
            return {"pid": c.pid, "deaths": c.deaths,
                    "broken": None if c.broken == NOT_HERE else c.broken}
        state = {"supervisor": os.getpid(),
                 "routers": [{**one(r), "id": r.router, "endpoint": self.cfg.endpoints()[i]}
                             for i, r in enumerate(self.routers)],
                 "shards": [one(c) for c in self.workers]}
        write_json(self.cfg.children_path, state, durable=False)

    def _children(self) -> list[Child]:
        return [*self.routers, *self.workers] + ([self.metrics] if self.metrics else [])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.migrator is not None and pid == self.migrator.pid:
                self.migrator_exited(status)
                continue
            for child in self._children():
                if child.pid == pid:
                    self._died(child, status)
                    if not self.stopping:
                        self._write_state()

    def _died(self, child: Child, status: int) -> None:
        child.pid = None
        if self.stopping or child.broken in (RETIRED, NOT_HERE):
            return
        if os.WIFSIGNALED(status):
            why = "killed by signal %d" % os.WTERMSIG(status)
        else:
            why = "exited with code %d" % os.WEXITSTATUS(status)
        if child.router is not None and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) == router.EXIT_BIND and not self.announced:
            raise StartError("the router cannot bind %s%s (in use? see the log)"
                             % (self.cfg.endpoints()[child.router],
                                " or listen on %s" % self.cfg.resp if self.cfg.resp else ""))
        if child.shard is not None and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) == shardworker.EXIT_STORAGE:
            if not shard_present(self.cfg, child.shard):
                child.broken = missing_shards_message(self.cfg, [child.shard])
            else:
                child.broken = ("cannot open %s; see the log, stop the cluster, then run "
                                "`flin repair --data %s --shard %d`"
                                % (self.cfg.shard_dir(child.shard), self.cfg.data, child.shard))
            log.error("%s %s: not restarting it", child.name, child.broken)
            if not self.announced:
                raise StartError("shard %d %s" % (child.shard, child.broken))
            return
        up_for = time.monotonic() - child.started
        child.deaths = 1 if up_for > _STABLE_S else child.deaths + 1
        delay = min(_BACKOFF_MAX_S, 0.1 * 2 ** (child.deaths - 1))
        child.restart_at = time.monotonic() + delay
        log.warning("%s (up %.1fs) %s; restarting in %.1fs (death %d in a row)",
                    child.name, up_for, why, delay, child.deaths)

    def _restart_due(self) -> None:
        now = time.monotonic()
        changed = False
        for child in self._children():
            if child.pid is None and child.broken is None and now >= child.restart_at:
                self._fork(child)
                changed = True
        if changed:
            self._write_state()

    # -- lifecycle ----------------------------------------------------------------
    def prepare(self) -> None:
        """Own the data folder (waiting for an earlier cluster's processes to
        exit), then check or create its manifest and shards. Nothing in the
        folder is touched before the lock is ours."""
        cfg = self.cfg
        os.makedirs(cfg.data, exist_ok=True)
        owner = take(cfg, SUPERVISOR, "start another cluster on it", _PREDECESSOR_WAIT_S)
        try:
            os.makedirs(cfg.run_dir, mode=0o700, exist_ok=True)
            os.chmod(cfg.run_dir, 0o700)
            self.prepare_folder()
            processes.raise_open_file_limit()
            try:    # now that no earlier router of this folder can still be draining
                for endpoint in cfg.endpoints():
                    check_ipc_free(endpoint)
                check_resp_free(self.cfg)
            except (zmq.ZMQError, ValueError) as exc:
                raise StartError(str(exc)) from None
        except OSError as exc:
            owner.release()
            raise StartError("cannot prepare %s: %s" % (cfg.data, exc)) from None
        except BaseException:
            owner.release()
            raise
        self.owner = owner

    def prepare_folder(self) -> None:
        """With the lock held: settle an interrupted reshard, then check or
        create the manifest and the shards."""
        recover(self.cfg)                 # a reshard a crash interrupted, first
        self.epoch = check_or_write_manifest(self.cfg, self.ring).get("epoch", 1)

    def run(self) -> int:
        """Start everything, supervise until told to stop; the exit code."""
        self.prepare()
        t0 = time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, self.on_reshard_signal)   # `flin reshard`
        try:
            self.start_children()
            self._write_state()
            while not self.stopping:
                self._wait_ready(t0)
                if self.reshard_asked and self.announced:
                    self.start_reshard()
                self._reap()
                self._restart_due()
                self._check_link()
                self.on_tick()
        finally:
            self.shutdown()
        return 0

    def start_children(self) -> None:
        for child in self._children():
            self._fork(child)

    def on_tick(self) -> None:
        """Called every turn of the supervising loop (cluster mode's hook)."""

    def ready_what(self) -> str:
        """The start of the ready line: what is ready."""
        return "%d shards ready on %s" % (self.cfg.shards, self.cfg.bind)

    def _check_link(self) -> None:
        """A router that is up must have its worker link in the run folder: a
        worker that restarts cannot reach the router without it. If it is
        gone (deleted by hand, or by a process that had no business there),
        restart the router, which binds it anew."""
        now = time.monotonic()
        if now < self.next_check or self.cfg.zmq_links:
            return
        self.next_check = now + 1.0
        for r in self.routers:
            if r.pid is None or now - max(r.started, r.link_alarm) < _LINK_GRACE_S:
                continue
            path = self.cfg.link_path_of(r.router or 0)
            if not os.path.exists(path):
                log.error("%s's worker link %s is gone: restarting it so that "
                          "workers can reach it", r.name, path)
                try:
                    os.kill(r.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                r.link_alarm = now   # one signal per grace period; the reaper restarts it

    def _wait_ready(self, t0: float) -> None:
        """Announce the cluster once every router has reported every shard up."""
        waiting = {r.ready_r: r for r in self.routers if r.ready_r is not None}
        try:
            readable, _, _ = select.select(list(waiting), [], [], 0.1)
        except InterruptedError:
            return
        for fd in readable:
            r = waiting[fd]
            data = os.read(fd, 1)
            os.close(fd)
            r.ready_r = None
            if data:
                self.ready.add(r.router or 0)
        if not self.announced and len(self.ready) == len(self.routers):
            self.announced = True
            pool = ("" if len(self.routers) == 1 else
                    " (%d routers, to %s)" % (len(self.routers), self.cfg.endpoints()[-1]))
            line = ("flin: %s%s in %.2fs (data %s, pid %d)"
                    % (self.ready_what(), pool, time.monotonic() - t0,
                       os.path.abspath(self.cfg.data), os.getpid()))
            if self.cfg.resp:
                line += "; Redis protocol on %s" % self.cfg.resp
            if self.cfg.metrics_port:
                line += "; metrics on http://127.0.0.1:%d/metrics" % self.cfg.metrics_port
            if self.on_ready is None:   # in the foreground (a daemon's stdout is its log)
                line += "; Ctrl-C or `flin stop --data %s` stops it" % self.cfg.data
            print(line, flush=True)
            if self.on_ready is not None:
                self.on_ready(line)

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop(self, children: list[Child], timeout: float) -> None:
        for child in children:
            if child.pid is not None:
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        while any(c.pid is not None for c in children) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for child in children:
            if child.pid is not None:
                log.warning("%s did not stop in %.0fs: killing it", child.name, timeout)
                try:
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                child.pid = None

    def shutdown(self) -> None:
        self.stopping = True
        log.info("stopping: the router%s first, then %d shards",
                 "s" if len(self.routers) > 1 else "", len(self.workers))
        if self.migrator is not None:       # a reshard stopped half-way: the next start settles it
            self._stop([self.migrator], 5)
        if self.metrics is not None:
            self._stop([self.metrics], 5)
        self._stop(self.routers, self.cfg.shard_timeout + 5)
        self._stop(self.workers, 15)
        if self.owner is not None:   # only the owner removes what is in the run folder
            try:
                os.unlink(self.cfg.children_path)
            except FileNotFoundError:
                pass
        log.info("stopped")
        if self.owner is not None:   # the lock itself goes with this process
            self.owner.clear()


