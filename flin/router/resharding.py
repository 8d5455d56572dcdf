"""The router's part of a live reshard (``flin reshard``; the driver is
``supervisor.migrate``): ``[RESHARD, action, ...]`` commands it answers
itself, and what it does with a ``Moved`` answer.

- ``prepare TO``: link to the shards of both rings (the router's per-shard
  state grows to ``max(N, TO)``: new workers connect as they start) and build
  the next ring. A backup (``SNAPSHOT_OPEN``) is refused from now to
  ``finish``: its shards would not be one cut.
- ``pause``: new requests are held, unplanned (``parked``: those with a
  command the ring routes; the driver's own steps are not), and the answer
  comes once no shard op is queued or in flight: then no op routed by the
  old ring is anywhere. The driver fences the sources, takes the last
  changes and switches the shards meanwhile. A pause that outlives
  ``PAUSE_MAX_S`` ends by itself (the shards' fence keeps the data right;
  what it refuses is re-routed or answered ``Moved``).
- ``switch TO EPOCH``: route by the next ring (built now if this router has
  none: it restarted); the read cache is emptied.
- ``resume``: plan the held requests, in order, and take new ones.
- ``finish``: the shards past the ring are let go (a shrink's retired
  ones); ``abort``: the next ring is dropped and the pause ends.
- ``copy``: one round of the copy, the pages of the sources to the targets
  through this router only (``Relay``).
- ``uncache``: serve nothing from the read cache until the switch: with
  ``--no-pause`` the routers switch one after the other, and one not yet
  switched must not serve a value a switched one has overwritten on the
  key's new shard (which never heard of its cache).
- ``load``: the requests this router has taken so far (the driver yields
  to the clients' when there are any).

A shard op answered ``Moved`` (the shard does not own the key at its epoch,
or the key is fenced while it moves) is sent again after ``MOVED_RETRY_S``
by the current ring, for up to ``MOVED_FOR_S``, then the error goes to the
caller (retryable: it was not applied). An op with keys of several shards
under the current ring is answered ``Moved`` at once.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from .. import errors
from ..protocol import (
    MOVE_IMPORT, MOVE_READ, NO_KEYS, OP_INFO, SCAN, SHARD, SNAPSHOT_OPEN, ErrorReply,
    written_keys,
)
from ..ring import Ring
from .planner import Invalid
from .shards import error as _err

log = logging.getLogger("flin.router")

PAUSE_MAX_S = 5.0            # a pause longer than this ends by itself
MOVED_RETRY_S = 0.005        # before a Moved op is sent again
MOVED_FOR_S = 2.0            # ... for at most this long
PARKED_MAX = 100_000         # requests held while paused; past it: Overloaded


class Relay:
    """``[RESHARD, copy, [[source, after, limit, max_bytes], ...], targets]``: one
    round of the copy, source to target through this router only. The
    sources' pages (``MOVE_READ``: per target, a blob of entries) go on to
    their targets as they are (``MOVE_IMPORT``; a blob for every target to
    each of ``targets``), then the driver gets ``[[source, entries, bytes,
    last], ...]``, or the first error. The driver sees no entry."""

    __slots__ = ("results", "waiting", "parent", "slot", "reads", "everyone", "summary")
    cap = 0

    def __init__(self, parent: Any, slot: int, reads: list, everyone: list) -> None:
        self.parent, self.slot, self.reads, self.everyone = parent, slot, reads, everyone
        self.results: list = [None] * len(reads)
        self.waiting = len(reads)
        self.summary: list | None = None

    def complete(self, router: Any) -> None:
        bad = next((r for r in self.results if type(r) is ErrorReply), None)
        if bad is not None or self.summary is not None:
            router.deliver(self.parent, self.slot, bad if bad is not None else self.summary)
            return
        summary, imports = [], []
        for (source, *_), (page, last) in zip(self.reads, self.results):
            n = size = 0
            for i in range(0, len(page), 3):          # [target, entries, blob, ...]
                target, count, blob = page[i], page[i + 1], page[i + 2]
                for t in (self.everyone if target < 0 else (target,)):
                    imports.append((t, [MOVE_IMPORT, blob]))
                n += count
                size += len(blob)
            summary.append([source, n, size, last])
        self.summary = summary
        if not imports:
            router.deliver(self.parent, self.slot, summary)
            return
        self.results, self.waiting = [None] * len(imports), len(imports)
        for k, (t, op) in enumerate(imports):
            router.route(t, op, self, k)


def _by_ring(cmd: Any) -> bool:
    """Is ``cmd`` routed by the ring (it has keys, or is a SCAN)?"""
    if type(cmd) is not list or not cmd:
        return False
    info = OP_INFO.get(cmd[0])
    return info is not None and (info.keys != NO_KEYS or cmd[0] == SCAN)


class Resharding:
    """Mixed into ``loop.Router``: the reshard commands and the Moved rule."""

    ring: Ring
    slots: int
    planner: Any
    cache: Any
    state: list
    inflight: list
    out_ops: list
    stats: Any

    def init_resharding(self, epoch: int) -> None:
        self.epoch = epoch
        self.next_ring: Ring | None = None
        self.resharding = False
        self.paused_at: float | None = None
        self.parked: list[tuple[Any, list]] = []
        self.pause_waiters: list[tuple[Any, int]] = []
        self.moved: deque[tuple[float, list, Any, int]] = deque()   # (due, op, target, slot)
        self.moved_since: dict[int, float] = {}   # id(op) -> when it was first answered Moved
        self.cache_held: Any = None               # the read cache while ``uncache`` holds it

    # -- the commands ---------------------------------------------------------------
    def parks(self, req: Any, cmds: list) -> bool:
        """While paused, hold a request that has a command routed by the ring
        (a keyed op or SCAN); RESHARD, SHARD, STATUS and the like go on (the
        driver's own steps are among them)."""
        if self.paused_at is None or not any(_by_ring(c) for c in cmds):
            return False
        if len(self.parked) >= PARKED_MAX:
            self.fail_all([(req, i) for i in range(len(cmds))], _err(  # type: ignore[attr-defined]
                errors.Overloaded, "the router holds %d requests during a reshard's switch; "
                "retry" % len(self.parked)))
            return True
        self.parked.append((req, cmds))
        return True

    def refuses_backup(self, req: Any, slot: int, cmd: Any) -> bool:
        """During a reshard, refuse a backup's snapshot (its shards would not
        be one cut); False: plan it as usual."""
        if (type(cmd) is list and len(cmd) == 3 and cmd[0] == SHARD and type(cmd[2]) is list
                and cmd[2][:1] == [SNAPSHOT_OPEN]):
            self.deliver(req, slot, _err(  # type: ignore[attr-defined]
                errors.BadRequest, "a reshard is in progress: back up after it "
                "(`flin status` shows its progress)"))
            return True
        return False

    def on_reshard(self, req: Any, slot: int, cmd: list) -> None:
        try:
            result = self._reshard(req, slot, cmd)
        except Invalid as exc:
            result = _err(exc.cls, str(exc))
        if result is not None:
            self.deliver(req, slot, result)  # type: ignore[attr-defined]

    def _reshard(self, req: Any, slot: int, cmd: list) -> Any:
        action = cmd[1] if len(cmd) > 1 else None
        if action == "prepare" and len(cmd) == 3 and type(cmd[2]) is int:
            to = cmd[2]
            if self.next_ring is None or self.next_ring.shards != to:
                self.next_ring = Ring(to)
            self.link_both(to)
            return True
        if action == "pause" and len(cmd) == 2:
            if self.paused_at is None:
                self.paused_at = time.monotonic()
            self.pause_waiters.append((req, slot))
            self.check_drained()
            return None
        if action == "switch" and len(cmd) == 4 and type(cmd[2]) is int and type(cmd[3]) is int:
            _, _, to, epoch = cmd
            if self.epoch < epoch:
                ring = self.next_ring if self.next_ring is not None and \
                    self.next_ring.shards == to else Ring(to)
                self.grow(max(len(self.state), to))  # type: ignore[attr-defined]
                self.planner.slots = self.slots  # type: ignore[attr-defined]
                self.ring, self.epoch, self.next_ring = ring, epoch, None
                self.planner.ring, self.planner.epoch = ring, epoch
                self.recache()
                if self.cache is not None:
                    self.cache.clear()
                log.info("router: now on epoch %d, %d shards", epoch, to)
            return True
        if action == "copy" and len(cmd) == 4 and type(cmd[2]) is list and type(cmd[3]) is list:
            reads, everyone = cmd[2], cmd[3]
            slots = self.slots
            if not reads or not all(type(r) is list and len(r) == 4 and type(r[0]) is int
                                    and 0 <= r[0] < slots for r in reads) or \
                    not all(type(t) is int and 0 <= t < slots for t in everyone):
                raise Invalid("RESHARD copy takes [[source, after, limit, max_bytes], ...] "
                              "and the targets, shards in 0..%d" % (slots - 1))
            relay = Relay(req, slot, reads, everyone)
            for j, (source, after, limit, max_bytes) in enumerate(reads):
                self.route(source, [MOVE_READ, after, limit, max_bytes], relay, j)  # type: ignore[attr-defined]
            return None
        if action == "uncache" and len(cmd) == 2:   # until the switch (--no-pause)
            if self.cache is not None:
                self.cache_held, self.cache = self.cache, None
            return True
        if action == "load" and len(cmd) == 2:   # requests taken so far: the driver yields
            return self.counts["requests"]  # type: ignore[attr-defined]
        if action == "resume" and len(cmd) == 2:
            self.resume()
            return True
        if action in ("finish", "abort") and len(cmd) == 2:
            self.recache()
            self.resharding = False
            self.next_ring = None
            self.moved_since.clear()
            self.slots = self.planner.slots = self.ring.shards
            if action == "abort":
                self.resume()
            return True
        raise Invalid("RESHARD takes prepare TO, pause, copy READS TARGETS, uncache, load, "
                      "switch TO EPOCH, resume, finish or abort")

    def recache(self) -> None:
        """Serve from the read cache again (after ``uncache``), emptied."""
        if self.cache_held is not None:
            self.cache, self.cache_held = self.cache_held, None
            self.cache.clear()

    def link_both(self, to: int) -> None:
        """Link to the shards of both rings (a router restarted mid-reshard too)."""
        self.grow(max(len(self.state), to))  # type: ignore[attr-defined]
        self.planner.slots = self.slots
        self.resharding = True

    def check_drained(self) -> None:
        """Answer the pause once nothing is queued for or in flight to a shard."""
        if not self.pause_waiters or any(self.inflight) or any(self.out_ops):
            return
        waiters, self.pause_waiters = self.pause_waiters, []
        for req, slot in waiters:
            self.deliver(req, slot, True)  # type: ignore[attr-defined]

    def resume(self) -> None:
        if self.paused_at is None:
            return
        self.paused_at = None
        waiters, self.pause_waiters = self.pause_waiters, []
        for req, slot in waiters:
            self.deliver(req, slot, _err(errors.ShardUnavailable,  # type: ignore[attr-defined]
                                         "the pause ended before the shards were idle"))
        parked, self.parked = self.parked, []
        for req, cmds in parked:
            self.route_commands(req, cmds)  # type: ignore[attr-defined]

    def reshard_tick(self, now: float) -> None:
        if self.paused_at is not None and now - self.paused_at > PAUSE_MAX_S:
            log.warning("router: a reshard's pause lasted %.0fs: resuming", PAUSE_MAX_S)
            self.resume()
        self.send_moved(now)

    # -- Moved ----------------------------------------------------------------------
    def on_moved(self, op: list, target: Any, slot: int) -> None:
        """A shard answered ``Moved`` for ``op``: send it again soon, by the ring then."""
        now = time.monotonic()
        self.moved_since.setdefault(id(op), now)
        self.moved.append((now + MOVED_RETRY_S, op, target, slot))

    def send_moved(self, now: float) -> None:
        moved, since = self.moved, self.moved_since
        while moved and moved[0][0] <= now:
            _, op, target, slot = moved.popleft()
            info = OP_INFO.get(op[0])
            shards = {self.ring.shard(k) for k in written_keys(op)} if info is not None else set()
            if now - since.get(id(op), now) > MOVED_FOR_S or len(shards) != 1:
                since.pop(id(op), None)
                self.deliver(target, slot, _err(  # type: ignore[attr-defined]
                    errors.Moved, "the key moved during a reshard; retry"))
                continue
            self.route(shards.pop(), op, target, slot)  # type: ignore[attr-defined]
        if len(since) > 1000:     # (an op answered at last leaves its entry: let old ones go)
            for key in [k for k, t in since.items() if now - t > 2 * MOVED_FOR_S]:
                del since[key]
