"""The driver of a live reshard: a child of the supervisor, a client of every
router, that moves the keys whose owner changes from N shards to M.

The steps (``run``), each through the routers (``[SHARD, s, op]``):

1. ``RESHARD prepare M`` on every router; wait until each sees every shard of
   both rings up; remember the workers' pids.
2. ``MOVE_BEGIN`` on every shard: the sources (growing: every old shard;
   shrinking: the shards past M) snapshot and record the moving keys
   written from then on; every shard builds the next ring now, not at the
   switch.
3. Copy: each round (``RESHARD copy``, through router 0) pages every
   source's snapshot (``MOVE_READ``: per target, a blob of entries) and the
   router passes each blob on to its target (``MOVE_IMPORT``; a remembered
   request uid goes to every target); this process sees no entry. At most
   ``--rate`` MB/s, and yielding while clients send requests.
4. Catch up: ``MOVE_DIRTY`` (what was written since) until little is left.
5. The switch, short: ``RESHARD pause`` on every router (answered once
   nothing is in flight; not with ``--no-pause``, where writes to moving
   keys are refused and re-routed by the routers until the switch, and the
   rest goes on), ``MOVE_FENCE`` on the sources (writes to moving keys
   refused), the last ``MOVE_DIRTY``, the CLEANUP marker of every
   source, then the **commit**: the manifest says epoch E+1 and M shards
   (durably). Then ``MOVE_SWITCH`` on every shard, and ``RESHARD switch``,
   ``resume`` and ``finish`` on every router.

Before the commit any failure aborts: ``MOVE_ABORT`` and ``RESHARD abort``
everywhere (the supervisor removes a grow's new shards; a shrink's targets
clean up what they took in). A worker that restarted meanwhile (its pid
changed) aborts it too: its move state, or its fence, is gone. After the
commit the reshard only goes forward: exit ``EXIT_SWITCHED`` and the
supervisor runs the switch steps again (``finish_only``).

Progress (keys and bytes moved, the rate, the pause) goes to
``run/reshard.json``, which ``flin reshard`` shows and STATUS reports; the
supervisor writes ``done`` or ``failed`` there once it has settled the
folders and the manifest.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from .. import errors
from ..client import Client
from ..config import Config
from ..protocol import (
    MOVE_ABORT, MOVE_BEGIN, MOVE_DIRTY, MOVE_FENCE, MOVE_IMPORT, MOVE_SWITCH, RESHARD,
    SHARD, ErrorReply,
)
from ..ring import Ring
from ..shardworker.moving import CLEANUP
from .datadir import MANIFEST, load_manifest, write_json

log = logging.getLogger("flin.reshard")

EXIT_FAILED, EXIT_SWITCHED = 2, 3      # aborted (nothing changed) / committed, switch owed
_DOWN = (errors.ShardUnavailable.code, errors.OutcomeUnknown.code)   # a shard not there now
PAGE_KEYS = 2000                       # entries per MOVE_READ page
ROUND_BYTES = 12 << 20                 # bytes of pages per round trip, over all sources:
                                       # (under glibc's 32 MiB mmap threshold, so that the
                                       # buffers are reused rather than faulted in anew)
CATCH_UP_LEFT = 1000                   # dirty keys below which the switch starts
CATCH_UP_ROUNDS = 20                   # ... or after this many rounds
BUSY_RPS = 50                          # client requests/s past which the copy yields:
YIELD = 2.0                            # it waits this many times as long as each round took
UP_WAIT_S = 30.0                       # for the new shards to be up at every router


class Failed(Exception):
    """The reshard cannot go on; the message says why."""


class Migration:
    def __init__(self, cfg: Config, plan: dict, next_ring: Ring | None = None) -> None:
        self.cfg, self.plan = cfg, plan
        self.next_ring = next_ring or Ring(plan["to"])
        self.n, self.m, self.epoch = plan["from"], plan["to"], plan["epoch"]
        self.slots = max(self.n, self.m)
        self.sources = list(range(self.n)) if self.m > self.n else list(range(self.m, self.n))
        self.clients = [Client(ep, timeout=max(30.0, cfg.shard_timeout * 4), retries=0,
                               discover=False) for ep in cfg.endpoints()]
        self.rate = float(plan.get("rate") or 0) * 1e6     # bytes/s, 0: as fast as it goes
        self.progress: dict[str, Any] = {**plan, "state": "copying", "keys": 0, "bytes": 0,
                                         "started": time.time(), "rate_mb_s": 0.0}
        self.t0 = time.monotonic()
        self.written_at = 0.0
        self.pids: dict[int, Any] = {}
        self.seen: tuple[float, int] | None = None   # (when, the routers' requests) last round

    # -- helpers ------------------------------------------------------------------------
    def step(self, name: str, do: Any) -> None:
        """Run one step, its seconds into the progress (``steps``)."""
        t0 = time.monotonic()
        do()
        self.progress.setdefault("steps", {})[name] = round(time.monotonic() - t0, 3)

    def report(self, force: bool = False, **fields: Any) -> None:
        self.progress.update(fields)
        now = time.monotonic()
        if force or now - self.written_at > 0.25:
            self.written_at = now
            secs = max(now - self.t0, 1e-9)
            p = self.progress
            p["rate_mb_s"] = round(p["bytes"] / secs / 1e6, 1)
            p["seconds"] = round(secs, 2)
            left = p.get("expected_keys", 0) - p["keys"]
            p["left_s"] = round(left * secs / p["keys"], 1) if left > 0 and p["keys"] else None
            write_json(self.cfg.reshard_path, self.progress, durable=False)

    def each_router(self, cmd: list) -> list[Any]:
        out = []
        for c in self.clients:
            r = c.execute([cmd])[0]
            if type(r) is ErrorReply:
                raise Failed("a router refused %s: %s" % (cmd[1], r.message))
            out.append(r)
        return out

    def shard_ops(self, ops: list[tuple[int, list]]) -> list[Any]:
        """One request of shard ops through router 0; each result, errors raised."""
        if not ops:
            return []
        results = self.clients[0].execute([[SHARD, s, op] for s, op in ops])
        for (s, op), r in zip(ops, results):
            if type(r) is ErrorReply:
                raise Failed("shard %d refused op %d: %s" % (s, op[0], r.message))
        return results

    def pids_now(self) -> dict[int, Any]:
        st = self.clients[0].status()
        return {s["id"]: s.get("pid") for s in st["shards"]}

    # -- the steps ----------------------------------------------------------------------
    def prepare(self) -> None:
        self.each_router([RESHARD, "prepare", self.m])
        deadline = time.monotonic() + UP_WAIT_S
        for c in self.clients:
            while True:
                st = c.status()
                up = [s for s in st["shards"] if s["alive"]]
                if len(st["shards"]) >= self.slots and len(up) >= self.slots:
                    break
                if time.monotonic() > deadline:
                    raise Failed("the shards were not all up within %.0fs" % UP_WAIT_S)
                time.sleep(0.05)
        self.pids = self.pids_now()

    def imports(self, flat: list) -> list[tuple[int, list]]:
        """The ``MOVE_IMPORT`` ops that take a page's ``[target, key, value, ...]`` in."""
        by_target: dict[int, list] = {}
        everyone: list = []
        for i in range(0, len(flat), 3):
            target, key, value = flat[i], flat[i + 1], flat[i + 2]
            (everyone if target < 0 else by_target.setdefault(target, [])).extend((key, value))
        if everyone:
            for t in self.targets():
                by_target.setdefault(t, []).extend(everyone)
        return [(t, [MOVE_IMPORT, entries]) for t, entries in by_target.items()]

    def import_pages(self, flat: list) -> None:
        self.shard_ops(self.imports(flat))

    def targets(self) -> list[int]:
        return list(range(self.n, self.m)) if self.m > self.n else list(range(self.m))

    def throttle(self, round_s: float, sent: int) -> None:
        """At most ``--rate``; and while clients send requests (more than
        ``BUSY_RPS`` besides ours: the round's ``sent`` requests and these
        loads), a pause ``YIELD`` times as long as the round took: the copy
        takes about a third of the machine, not all of it."""
        if self.rate > 0:
            ahead = self.progress["bytes"] / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)
        now = time.monotonic()
        taken = sum(self.each_router([RESHARD, "load"]))   # (counting these loads)
        if self.seen is not None:
            others = taken - self.seen[1] - sent - len(self.clients)
            busy = others / max(now - self.seen[0], 1e-3) > BUSY_RPS
            self.progress["yielding"] = busy
            if busy:
                time.sleep(YIELD * round_s)
        self.seen = (time.monotonic(), taken)

    def begin(self) -> None:
        # every shard: the sources snapshot and record; all build the next ring now, and
        # a target cleans nothing up while it takes keys in
        table = self.next_ring.table_bytes()     # ~5 ms a shard to build, in each worker
        for first in range(0, self.slots, 8):     # (16 MiB a request)
            self.shard_ops([(s, [MOVE_BEGIN, self.m, self.epoch, table])
                            for s in range(first, min(self.slots, first + 8))])

    def expect(self) -> None:
        """How many entries should move (the sources' key counts times the
        share that moves), for the time left."""
        keys = {s["id"]: s.get("keys", 0) for s in self.clients[0].stats()["shards"]
                if s.get("alive")}
        share = (self.m - self.n) / self.m if self.m > self.n else 1.0
        self.progress["expected_keys"] = int(sum(keys.get(s, 0) for s in self.sources) * share)

    def copy(self) -> None:
        # two lanes of sources, a round of each in flight at once, going through the
        # router independently (one lane's sources read while the other's pages are
        # written): every source's next page straight into the targets
        # (``router.resharding.Relay``); no entry comes to this process
        everyone = self.targets()
        lanes = [{s: None for s in self.sources[i::2]} for i in range(2)]
        page_bytes = max(64 << 10, ROUND_BYTES // max(1, len(self.sources)))
        c = self.clients[0]
        while any(lanes):
            t0 = time.monotonic()
            rids = [(lane, c.submit([[RESHARD, "copy", [[s, after, PAGE_KEYS, page_bytes]
                                                        for s, after in lane.items()],
                                      everyone]])) for lane in lanes if lane]
            keys = size = 0
            for lane, rid in rids:
                got = c.collect(rid)
                r = got if isinstance(got, ErrorReply) else got[0]
                if isinstance(r, ErrorReply):
                    raise Failed("a copy round failed: %s" % r.message)
                summary: list = r
                for source, n, nbytes, last in summary:
                    keys += n
                    size += nbytes
                    if last is None:
                        del lane[source]
                    else:
                        lane[source] = last
            self.report(keys=self.progress["keys"] + keys, bytes=self.progress["bytes"] + size)
            self.throttle(time.monotonic() - t0, len(rids))

    def catch_up(self, until: int, rounds: int = CATCH_UP_ROUNDS) -> int:
        """Move what was written since, until fewer than ``until`` are left
        (or after ``rounds``: writes faster than the copy; the pause takes the rest)."""
        for _ in range(rounds):
            per = max(64 << 10, ROUND_BYTES // max(1, len(self.sources)))
            got = self.shard_ops([(s, [MOVE_DIRTY, 10_000, per]) for s in self.sources])
            flat = [x for page, _ in got for x in page]
            left = sum(n for _, n in got)
            self.import_pages(flat)
            self.report(keys=self.progress["keys"] + len(flat) // 3, dirty=left)
            if left < until:
                break
        return left

    def switch(self) -> None:
        t0 = time.monotonic()
        if self.plan.get("pause", True):    # --no-pause: the fence and Moved alone
            self.each_router([RESHARD, "pause"])
        else:                               # ... and no router's cache
            self.each_router([RESHARD, "uncache"])
        self.shard_ops([(s, [MOVE_FENCE]) for s in self.sources])
        self.catch_up(1, rounds=1_000_000)     # fenced: nothing new comes
        if self.pids_now() != self.pids:
            raise Failed("a shard worker restarted during the reshard")
        for s in self.sources:                 # before the commit: a crash after it cleans up
            with open(os.path.join(self.cfg.shard_dir(s), CLEANUP), "w") as f:
                f.write("%d\n" % self.epoch)
                f.flush()
                os.fsync(f.fileno())
        self.commit()
        self.finish_switch()
        self.report(force=True, pause_ms=round(1000 * (time.monotonic() - t0), 1))

    def commit(self) -> None:
        manifest = load_manifest(self.cfg) or {}
        manifest.update(shards=self.m, epoch=self.epoch,
                        reshard={**manifest.get("reshard", {}), "state": "switched"})
        write_json(os.path.join(self.cfg.data, MANIFEST), manifest)
        self.report(force=True, state="switched")
        _failpoint("after_commit")

    def finish_switch(self) -> None:
        """After the commit: every shard and router on the new ring. A shard that
        is down does not hold the routers back: it restarts on the new ring
        (the supervisor forks it so once the commit is in the manifest)."""
        results = self.clients[0].execute([[SHARD, s, [MOVE_SWITCH, self.m, self.epoch]]
                                           for s in range(self.slots)])
        for s, r in enumerate(results):
            if type(r) is ErrorReply and r.code not in _DOWN:
                raise Failed("shard %d refused to switch: %s" % (s, r.message))
        self.each_router([RESHARD, "switch", self.m, self.epoch])
        self.each_router([RESHARD, "resume"])
        self.each_router([RESHARD, "finish"])

    def abort(self) -> None:
        """Call it off everywhere, through whichever router answers (a shard
        that misses it drops its move after ``moving.MOVE_IDLE_S``)."""
        left = set(range(self.slots))
        for c in self.clients * 2:
            if not left:
                break
            try:
                got = c.execute([[SHARD, s, [MOVE_ABORT]] for s in sorted(left)])
            except errors.FlinError:
                continue
            left = {s for s, r in zip(sorted(left), got) if type(r) is ErrorReply}
        for c in self.clients:
            try:
                c.execute([[RESHARD, "abort"]])
            except errors.FlinError:
                pass

    def close(self) -> None:
        for c in self.clients:
            c.close()


RUN, FINISH, ABORT = "run", "finish", "abort"   # what a driver child is forked to do
FAILPOINT = "FLIN_TEST_RESHARD_STALL"   # "STEP:SECONDS": the crash tests' window


def _failpoint(step: str) -> None:
    """Wait where the crash tests kill a process (only with ``FAILPOINT`` set)."""
    where, _, secs = os.environ.get(FAILPOINT, "").partition(":")
    if where == step:
        time.sleep(float(secs or 10))


def run(cfg: Config, plan: dict, mode: str = RUN, next_ring: Ring | None = None) -> int:
    """The reshard child's main; its exit code (0: done). ``FINISH``: the
    switch steps only (committed); ``ABORT``: call it off everywhere (the
    driver before died without doing so)."""
    mig = Migration(cfg, plan, next_ring)
    committed = mode == FINISH
    try:
        if mode == ABORT:
            mig.abort()
            mig.report(force=True, state="rolling back", error=plan.get("why", "the driver died"))
            return EXIT_FAILED
        if mode == FINISH:
            mig.finish_switch()
            mig.report(force=True, state="switched")
            return 0
        mig.report(force=True)
        mig.step("prepare", mig.prepare)
        mig.step("begin", mig.begin)
        mig.expect()
        mig.step("copy", mig.copy)
        mig.step("catch_up", lambda: mig.catch_up(CATCH_UP_LEFT))
        committed = True      # from the commit in switch() on, it only goes forward
        mig.step("switch", mig.switch)
        mig.report(force=True, state="switched")
        return 0
    except (Failed, errors.FlinError, OSError) as exc:
        why = str(exc) or type(exc).__name__
        if not committed or (load_manifest(cfg) or {}).get("epoch") != plan["epoch"]:
            log.error("reshard to %d shards failed, rolling back: %s", plan["to"], why)
            mig.abort()
            mig.report(force=True, state="rolling back", error=why)
            return EXIT_FAILED
        log.error("reshard to %d shards: the switch is owed: %s", plan["to"], why)
        mig.report(force=True, state="switching", error=why)
        return EXIT_SWITCHED
    finally:
        mig.close()
