"""The supervisor's part of a live reshard, and how ``flin reshard`` asks.

The topology is versioned data in the manifest (``flin.json``): ``shards``
(the ring's count), ``epoch`` (1 until a first reshard; bumped by each) and,
while one runs, ``reshard``: ``{"from", "to", "epoch", "state"}`` with state
``copying`` until the commit, ``switched`` from it (``migrate.py``). Every
router and worker is started with the ring and the epoch of the manifest.

- ``flin reshard --shards M`` (``ask``) writes ``run/reshard.json``
  ``{"state": "asked", "to", "rate", "id"}`` and sends SIGUSR1; then it
  reads the same file, which the supervisor and the driver keep up to date.
- The supervisor (``Reshards.start_reshard``) checks it (no other reshard,
  every worker up, M in 1..4096 and not N), writes the intent into the
  manifest, creates and starts a grow's new shards, and forks the driver
  (``migrate.run``), which is not restarted.
- When the driver exits: 0, the supervisor takes the new ring (routers and
  workers restarted from now on get it), stops a shrink's retired workers
  and deletes their folders, and drops ``reshard`` from the manifest;
  ``EXIT_SWITCHED`` (committed, switch owed), the driver runs again for the
  switch steps; anything else was rolled back: a grow's new workers are
  stopped and their folders deleted.
- At start (``recover``), a manifest that still has ``reshard`` is settled
  first: committed (its epoch is the manifest's), a shrink's retired folders
  go; not committed, a grow's new folders go. Either way the shards that may
  hold keys they do not own have a CLEANUP marker and clean up (``moving``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import time
import uuid
from typing import Any, Callable

from ..config import MAX_SHARDS, Config
from ..ring import Ring
from ..shardworker.moving import CLEANUP
from . import migrate
from .datadir import MANIFEST, StartError, load_manifest, running_pid, write_json

log = logging.getLogger("flin.supervisor")

ASKED, REFUSED, DONE, FAILED = "asked", "refused", "done", "failed"
RETIRED = "retired by a reshard"          # a Child's ``broken``: not restarted


# -- flin reshard ---------------------------------------------------------------------
def ask(cfg: Config, to: int, rate: float | None, pause: bool = True) -> str:
    """Ask the supervisor serving ``cfg.data`` to reshard to ``to`` shards;
    the request's id. ``StartError`` if none runs there."""
    pid = running_pid(cfg)
    if pid is None:
        raise StartError("no Flin cluster runs on %s" % cfg.data)
    rid = uuid.uuid4().hex
    write_json(cfg.reshard_path, {"state": ASKED, "to": to, "rate": rate, "pause": pause,
                                  "id": rid})
    os.kill(pid, signal.SIGUSR1)
    return rid


def progress(cfg: Config) -> dict:
    """What ``run/reshard.json`` says now ({} if nothing)."""
    try:
        with open(cfg.reshard_path) as f:
            got = json.load(f)
    except (OSError, ValueError):
        return {}
    return got if type(got) is dict else {}


def _save(cfg: Config, manifest: dict) -> None:
    write_json(os.path.join(cfg.data, MANIFEST), manifest)


def recover(cfg: Config) -> None:
    """Settle a reshard that a crash interrupted (before the workers start)."""
    manifest = load_manifest(cfg)
    if not manifest or not manifest.get("reshard"):
        return
    r = manifest["reshard"]
    n, m = r["from"], r["to"]
    committed = manifest.get("epoch") == r["epoch"]
    gone = range(m, n) if committed else range(n, m)   # a shrink's retired / a grow's new
    for s in gone:
        shutil.rmtree(cfg.shard_dir(s), ignore_errors=True)
    log.warning("a reshard from %d to %d shards was interrupted: %s", n, m,
                "it was committed; finishing it (%d shards, epoch %d)" % (m, r["epoch"])
                if committed else "it had not switched; rolled back to %d shards" % n)
    del manifest["reshard"]
    _save(cfg, manifest)
    write_json(cfg.reshard_path, {**progress(cfg), "state": DONE if committed else FAILED,
                                  "error": None if committed else "interrupted by a crash"})


class Reshards:
    """Mixed into ``Supervisor``: a reshard's start, its driver, its end."""

    cfg: Config
    ring: Ring
    epoch: int
    workers: list
    stopping: bool
    _fork: Callable[[Any], None]
    _write_state: Callable[[], None]
    _stop: Callable[[list, float], None]
    _new_child: Callable[[str, int | None], Any]     # ``supervisor.Child``

    def init_reshards(self) -> None:
        self.reshard_asked = False
        self.plan: dict | None = None
        self.migrator: Any = None            # the driver's Child while it runs
        self.mode = migrate.RUN              # what it was forked to do
        self.next_ring: Ring | None = None

    def on_reshard_signal(self, signum: int, frame: Any) -> None:
        self.reshard_asked = True

    def topology(self) -> tuple[Ring, int]:
        """The ring and epoch a child started now acts on: a reshard's new
        ones once it is committed (a worker or router restarted between the
        commit and its switch must not come back on the old ring)."""
        if self.plan is not None and self.next_ring is not None and self._committed():
            return self.next_ring, self.plan["epoch"]
        return self.ring, self.epoch

    def slots(self) -> int:
        """Shards routers link to: both rings' during a reshard."""
        return max(self.cfg.shards, self.plan["to"]) if self.plan else self.cfg.shards

    def refuse(self, req: dict, why: str) -> None:
        log.warning("reshard refused: %s", why)
        write_json(self.cfg.reshard_path, {**req, "state": REFUSED, "error": why})

    def start_reshard(self) -> None:
        self.reshard_asked = False
        req = progress(self.cfg)
        if req.get("state") != ASKED:
            return
        to, n = req.get("to"), self.cfg.shards
        if self.plan is not None:
            return self.refuse(req, "a reshard to %d shards is in progress" % self.plan["to"])
        if type(to) is not int or not 1 <= to <= MAX_SHARDS or to == n:
            return self.refuse(req, "--shards must be in 1..%d and not %d (the count now)"
                               % (MAX_SHARDS, n))
        down = [c.shard for c in self.workers if c.pid is None or c.broken]
        if down:
            return self.refuse(req, "shard %s is down: a reshard needs every shard up" % down)
        owed = [s for s in range(n) if os.path.exists(os.path.join(self.cfg.shard_dir(s),
                                                                   CLEANUP))]
        if owed:   # keys the last reshard left behind must go first: asked again each turn
            self.reshard_asked = True
            if req.get("waiting") != owed[:1]:
                write_json(self.cfg.reshard_path, {**req, "waiting": owed[:1]})
            return None
        stray = [s for s in range(n, to) if os.path.exists(self.cfg.shard_dir(s))]
        if stray:
            return self.refuse(req, "%s exists: a folder left by an earlier reshard? Move it "
                               "away first" % self.cfg.shard_dir(stray[0]))
        manifest = load_manifest(self.cfg) or {}
        plan = {"id": req.get("id"), "from": n, "to": to, "epoch": manifest.get("epoch", 1) + 1,
                "rate": req.get("rate"), "pause": req.get("pause") is not False}
        manifest["reshard"] = {**plan, "state": "copying"}
        _save(self.cfg, manifest)
        log.info("resharding from %d to %d shards (epoch %d)", n, to, plan["epoch"])
        self.plan = plan
        self.next_ring = Ring(to)            # once: the driver sends its table to the shards
        if to > n:
            import plyvel
            for s in range(n, to):
                plyvel.DB(self.cfg.shard_dir(s), create_if_missing=True).close()
                child = self._new_child("shard-%d" % s, s)
                self.workers.append(child)
                self._fork(child)
        self._driver(migrate.RUN)
        self._write_state()

    def run_migrator(self) -> int:
        """In the driver child: the reshard's steps."""
        assert self.plan is not None
        return migrate.run(self.cfg, self.plan, self.mode, self.next_ring)

    def _driver(self, mode: str) -> None:
        self.mode = mode
        self.migrator = self._new_child("reshard", None)
        self._fork(self.migrator)

    def migrator_exited(self, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        plan = self.plan
        assert plan is not None
        self.migrator = None
        if self.stopping:
            return                           # the next start settles it (``recover``)
        if code == migrate.EXIT_SWITCHED or (code != 0 and self._committed()):
            log.warning("reshard: running the switch steps again")
            time.sleep(0.2)
            self._driver(migrate.FINISH)
            return
        if code not in (0, migrate.EXIT_FAILED) and self.mode == migrate.RUN:
            log.error("reshard: the driver died (%s): calling the reshard off", _how(status))
            plan["why"] = "the driver died (%s)" % _how(status)
            self._driver(migrate.ABORT)
            return
        n, m = plan["from"], plan["to"]
        manifest = load_manifest(self.cfg) or {}
        manifest.pop("reshard", None)
        if code == 0:
            self._let_go(m)                  # a shrink's retired shards
            self.cfg = dataclasses.replace(self.cfg, shards=m)
            self.ring, self.epoch = Ring(m), plan["epoch"]
            log.info("resharded from %d to %d shards (epoch %d)", n, m, self.epoch)
        else:
            self._let_go(n)                  # a grow's new shards
            log.error("reshard from %d to %d shards failed and was rolled back (exit %d)",
                      n, m, code)
        _save(self.cfg, manifest)
        self.plan, self.mode = None, migrate.RUN
        self._write_state()
        # last: `flin reshard` returns when it reads this, with the folders settled
        write_json(self.cfg.reshard_path, {**progress(self.cfg),
                                           "state": DONE if code == 0 else FAILED})

    def _let_go(self, first: int) -> None:
        """Stop the workers of shards ``first`` and up, and delete their folders."""
        gone = [c for c in self.workers if c.shard is not None and c.shard >= first]
        for c in gone:
            c.broken = RETIRED
        self._stop(gone, 15)
        self.workers = [c for c in self.workers if c not in gone]
        for c in gone:
            shutil.rmtree(self.cfg.shard_dir(c.shard), ignore_errors=True)

    def _committed(self) -> bool:
        return self.plan is not None and \
            (load_manifest(self.cfg) or {}).get("epoch") == self.plan["epoch"]


def _how(status: int) -> str:
    return ("killed by signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status)
            else "exit %d" % os.WEXITSTATUS(status))
