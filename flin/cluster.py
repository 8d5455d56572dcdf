"""The supervisor: starts, watches, restarts and stops every Flin process.

``Supervisor.run()`` is ``flin start``. It checks the manifest, builds the
ring once, forks the router and one worker per shard (fork shares the
imported code between 65 processes), prints one line when every shard
answers, restarts any child that dies (with backoff, logging why), and on
SIGTERM/SIGINT stops the router first (it answers what is in flight), then
the workers (each closes its LevelDB), waits for all of them and exits 0.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
from typing import Callable

from . import metrics, procutil, router, shardworker
from .config import Config
from .ring import Ring

log = logging.getLogger("flin.supervisor")

FORMAT_VERSION = 1
MANIFEST = "flin.json"
_BACKOFF_MAX_S = 30.0     # longest wait before restarting a child that keeps dying
_STABLE_S = 10.0          # a child up this long has its backoff reset


class StartError(Exception):
    """The cluster cannot start; the message says why and what to do."""


def load_manifest(cfg: Config) -> dict | None:
    path = os.path.join(cfg.data, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_manifest(cfg: Config, ring: Ring, **extra: object) -> dict:
    """Write ``flin.json`` (atomically): the data format, shard count and ring."""
    manifest = {"format": FORMAT_VERSION, "shards": cfg.shards, "ring": ring.params(),
                "created": time.time(), **extra}
    tmp = os.path.join(cfg.data, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(cfg.data, MANIFEST))
    return manifest


def check_or_write_manifest(cfg: Config, ring: Ring) -> dict:
    """The data folder's manifest: created on first start, then enforced."""
    manifest = load_manifest(cfg)
    if manifest is None:
        if any(n.startswith("shard-") for n in os.listdir(cfg.data)):
            raise StartError("%s holds shard folders but no %s; refusing to guess "
                             "its layout" % (cfg.data, MANIFEST))
        return write_manifest(cfg, ring)
    if manifest.get("format") != FORMAT_VERSION:
        raise StartError("%s has data format %r; this Flin reads format %d"
                         % (cfg.data, manifest.get("format"), FORMAT_VERSION))
    if manifest.get("shards") != cfg.shards:
        raise StartError(
            "%s was made with %s shards, not %d. Start with --shards %s "
            "(resharding an existing folder is not supported yet)."
            % (cfg.data, manifest.get("shards"), cfg.shards, manifest.get("shards")))
    if manifest.get("ring") != ring.params():
        raise StartError("%s was made with ring %r, not %r"
                         % (cfg.data, manifest.get("ring"), ring.params()))
    return manifest


def pid_file(cfg: Config) -> str:
    return os.path.join(cfg.run_dir, "flin.pid")


def running_pid(cfg: Config) -> int | None:
    """The pid of the supervisor serving ``cfg.data``, if one is alive."""
    try:
        with open(pid_file(cfg)) as f:
            pid = int(f.read().strip())
        return pid if procutil.alive(pid) else None
    except (OSError, ValueError):
        return None


class Child:
    """One supervised process: the router (shard None) or a shard worker."""

    def __init__(self, name: str, shard: int | None) -> None:
        self.name, self.shard = name, shard
        self.pid: int | None = None
        self.started = 0.0
        self.deaths = 0
        self.restart_at = 0.0
        self.broken: str | None = None   # why it is no longer restarted


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ring = Ring(cfg.shards)
        self.router = Child("router", None)
        self.workers = [Child("shard-%d" % s, s) for s in range(cfg.shards)]
        self.metrics = Child("metrics", None) if cfg.metrics_port else None
        self.on_ready: Callable[[str], None] | None = None   # called with the ready line
        self.stopping = False
        self.announced = False
        self.ready_r: int | None = None

    # -- processes ----------------------------------------------------------------
    def _fork(self, child: Child) -> None:
        ready_w = None
        if child is self.router and not self.announced:  # a (new) router reports readiness
            if self.ready_r is not None:
                os.close(self.ready_r)
            self.ready_r, ready_w = os.pipe()
        pid = procutil.fork_child()
        if pid == 0:  # the child: never returns into the supervisor's code
            code = 1
            try:
                if self.ready_r is not None and ready_w is not None:
                    os.close(self.ready_r)
                if child is self.metrics:
                    code = metrics.run(self.cfg)
                elif child.shard is None:
                    code = router.run(self.cfg, self.ring, ready_w)
                else:
                    code = shardworker.run(self.cfg, child.shard)
            except BaseException:
                log.exception("%s crashed", child.name)
            finally:
                logging.shutdown()
                os._exit(code)
        if ready_w is not None:
            os.close(ready_w)
        child.pid, child.started = pid, time.monotonic()

    def state_path(self) -> str:
        return os.path.join(self.cfg.run_dir, "children.json")

    def _write_state(self) -> None:
        """What only the supervisor knows (deaths, broken shards), for ``flin status``."""
        def one(c: Child) -> dict:
            return {"pid": c.pid, "deaths": c.deaths, "broken": c.broken}
        state = {"supervisor": os.getpid(), "router": one(self.router),
                 "shards": [one(c) for c in self.workers]}
        tmp = self.state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path())

    def _children(self) -> list[Child]:
        return [self.router, *self.workers] + ([self.metrics] if self.metrics else [])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for child in self._children():
                if child.pid == pid:
                    self._died(child, status)
                    if not self.stopping:
                        self._write_state()

    def _died(self, child: Child, status: int) -> None:
        child.pid = None
        if self.stopping:
            return
        if os.WIFSIGNALED(status):
            why = "killed by signal %d" % os.WTERMSIG(status)
        else:
            why = "exited with code %d" % os.WEXITSTATUS(status)
        if child is self.router and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) == router.EXIT_BIND and not self.announced:
            raise StartError("the router cannot bind %s (in use? see the log)" % self.cfg.bind)
        if child.shard is not None and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) == shardworker.EXIT_STORAGE:
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
        cfg = self.cfg
        os.makedirs(cfg.data, exist_ok=True)
        os.makedirs(cfg.run_dir, mode=0o700, exist_ok=True)
        os.chmod(cfg.run_dir, 0o700)
        other = running_pid(cfg)
        if other is not None and other != os.getpid():
            raise StartError("a Flin supervisor (pid %d) already serves %s" % (other, cfg.data))
        check_or_write_manifest(cfg, self.ring)
        with open(pid_file(cfg), "w") as f:
            f.write("%d\n" % os.getpid())

    def run(self) -> int:
        """Start everything, supervise until told to stop; the exit code."""
        self.prepare()
        t0 = time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for child in self._children():
            self._fork(child)
        self._write_state()
        try:
            while not self.stopping:
                self._wait_ready(t0)
                self._reap()
                self._restart_due()
        finally:
            self.shutdown()
        return 0

    def _wait_ready(self, t0: float) -> None:
        fds = [self.ready_r] if self.ready_r is not None else []
        try:
            readable, _, _ = select.select(fds, [], [], 0.1)
        except InterruptedError:
            return
        if readable:
            data = os.read(self.ready_r, 1)
            os.close(self.ready_r)
            self.ready_r = None
            if data and not self.announced:
                self.announced = True
                line = ("flin: %d shards ready on %s in %.2fs (data %s, pid %d)"
                        % (self.cfg.shards, self.cfg.bind, time.monotonic() - t0,
                           os.path.abspath(self.cfg.data), os.getpid()))
                if self.metrics is not None:
                    line += "; metrics on http://127.0.0.1:%d/metrics" % self.cfg.metrics_port
                print(line, flush=True)
                log.info("%s", line[6:])
                if self.on_ready is not None:
                    self.on_ready(line)

    def _on_stop(self, signum, frame) -> None:
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
        log.info("stopping: router first, then %d shards", len(self.workers))
        if self.metrics is not None:
            self._stop([self.metrics], 5)
        self._stop([self.router], self.cfg.shard_timeout + 5)
        self._stop(self.workers, 15)
        for path in (pid_file(self.cfg), self.state_path()):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        log.info("stopped")


class OneLineFormatter(logging.Formatter):
    """One line per event: a traceback's lines are joined with `` | ``."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def setup_logging(level: str) -> None:
    """Log to stderr (``DATA/flin.log`` with ``--detach``), one line per event:
    time, pid, role (``supervisor``, ``router``, ``shard-N``, ``metrics``),
    logger, level, message. Children set their role in ``become_child``."""
    procutil.set_log_role("supervisor")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(
        "%(asctime)s %(process)d %(role)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def stop(cfg: Config, timeout: float = 30.0) -> bool:
    """SIGTERM the supervisor serving ``cfg.data`` and wait for it to exit.
    False if none was running."""
    pid = running_pid(cfg)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procutil.alive(pid):
            return True
        time.sleep(0.05)
    raise TimeoutError("supervisor %d did not stop within %.0fs" % (pid, timeout))
