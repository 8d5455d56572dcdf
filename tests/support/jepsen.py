"""Jepsen-style operation histories and the checkers the fault tests run on them.

Client threads record into one :class:`History`: ``op = h.invoke(process,
key, f, value)`` before sending a request, then exactly one of ``h.ok(op,
result)``, ``h.fail(op)`` (known NOT to have happened: refused before
applying) or ``h.info(op)`` (outcome unknown: a timeout, ``OutcomeUnknown``;
it may take effect at any time after its start, even after it "ended").

Operations (each key is an independent register whose initial value is None):

* ``"read"``: value None; result the bytes read, or None.
* ``"write"``: value the bytes written.
* ``"cas"``: value ``(expected, new)``; result True/False. A cas that answered
  False is an ok op with no effect.

Checkers: :func:`check_linearizable` (Wing & Gong / Lowe search with
memoisation, as in Knossos and Porcupine), :func:`lost_writes` and
:func:`two_primaries`.
"""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, Optional, Union

READ, WRITE, CAS = "read", "write", "cas"
INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
Value = Optional[bytes]


@dataclass(eq=False)
class Op:
    """One operation: its call (``start``) and, once known, its outcome.

    ``status`` is ``"invoke"`` until completed; an op still ``"invoke"`` when
    checked (its client died) counts as ``"info"``.
    """

    index: int
    process: Hashable
    key: Hashable
    f: str
    value: Any
    start: float
    end: Optional[float] = None
    status: str = INVOKE
    result: Any = None

    def summary(self) -> str:
        """``process f args [-> result]`` with no times, e.g. ``p1 read -> b'x'``."""
        if self.f == READ:
            what = "read"
        elif self.f == WRITE:
            what = "write %r" % (self.value,)
        else:
            what = "cas %r -> %r" % tuple(self.value)
        out = "%s %s" % (self.process, what)
        if self.status == OK and self.f != WRITE:
            out += " => %r" % (self.result,)
        return out

    def describe(self, t0: float = 0.0) -> str:
        """A one-line human-readable form; times in ms from ``t0``."""
        end = "      ?" if self.end is None or self.status != OK else "%7.3f" % ((self.end - t0) * 1e3)
        return "#%-4d [%7.3f, %s] %-4s %s" % (
            self.index, (self.start - t0) * 1e3, end, self.status, self.summary())


class History:
    """A thread-safe record of operations, in invoke order.

    ``clock`` defaults to :func:`time.monotonic`; every recording method takes
    an optional ``at=`` to give the time explicitly (unit tests, simulations).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: list[Op] = []

    def invoke(self, process: Hashable, key: Hashable, f: str, value: Any = None,
               *, at: Optional[float] = None) -> Op:
        """Record the start of an operation and return its handle."""
        if f == READ:
            if value is not None:
                raise ValueError("a read takes no value")
        elif f == WRITE:
            if not isinstance(value, bytes):
                raise ValueError("a write's value must be bytes, not %r" % (value,))
        elif f == CAS:
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes)):
                raise ValueError("a cas's value must be (expected, new bytes), not %r" % (value,))
        else:
            raise ValueError("unknown operation %r" % (f,))
        with self._lock:
            op = Op(len(self._ops), process, key, f, value, self._clock() if at is None else at)
            self._ops.append(op)
        return op

    def ok(self, op: Op, result: Any = None, *, at: Optional[float] = None) -> Op:
        """Record that ``op`` completed with ``result``."""
        if op.f == CAS and not isinstance(result, bool):
            raise ValueError("a cas's result must be True or False, not %r" % (result,))
        return self._complete(op, OK, result, at)

    def fail(self, op: Op, *, at: Optional[float] = None) -> Op:
        """Record that ``op`` certainly did not take effect."""
        return self._complete(op, FAIL, None, at)

    def info(self, op: Op, *, at: Optional[float] = None) -> Op:
        """Record that the outcome of ``op`` is unknown."""
        return self._complete(op, INFO, None, at)

    def _complete(self, op: Op, status: str, result: Any, at: Optional[float]) -> Op:
        with self._lock:
            if op.status != INVOKE:
                raise ValueError("op #%d already completed (%s)" % (op.index, op.status))
            op.end = self._clock() if at is None else at
            if op.end < op.start:
                raise ValueError("op #%d ends before it starts" % op.index)
            op.status, op.result = status, result
        return op

    @property
    def ops(self) -> list[Op]:
        """A snapshot of the operations recorded so far."""
        with self._lock:
            return list(self._ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)


OpSource = Union[History, Iterable[Op]]


def _by_key(history: OpSource) -> dict[Hashable, list[Op]]:
    groups: dict[Hashable, list[Op]] = defaultdict(list)
    for op in (history.ops if isinstance(history, History) else history):
        groups[op.key].append(op)
    for ops in groups.values():
        ops.sort(key=lambda o: (o.start, o.index))
    return dict(groups)


# ---------------------------------------------------------------- linearizability
# A prepared step is (kind, a, b). _R: read that returned a. _W: write a.
# _CT: cas a -> b that took effect (ok True, or unknown). _CF: cas that
# answered False (needs register != a, no effect).
_R, _W, _CT, _CF = 0, 1, 2, 3
Step = tuple[int, Any, Any]


def _prepare(op: Op) -> Optional[Step]:
    """The step ``op`` contributes, or None if it constrains nothing."""
    if op.status == FAIL:
        return None
    known = op.status == OK
    if op.f == READ:
        return (_R, op.result, None) if known else None
    if op.f == WRITE:
        return (_W, op.value, None)
    expected, new = op.value
    # an unknown cas that "failed its compare" is the same as one that never ran
    return (_CT, expected, new) if (not known or op.result) else (_CF, expected, None)


@dataclass
class _Stuck:
    op: int                  # index (into the prepared list) of the op that could not be placed
    states: list[Value]      # register values the furthest consistent prefixes left
    placed: int              # how many ops those prefixes had linearized


def _search(steps: list[Step], starts: list[float], ends: list[float]) -> Optional[_Stuck]:
    """WGL/Lowe search over a Porcupine-style entries list; None if linearizable.

    Nodes 1..2n are the call/return events sorted by time (calls before
    returns at equal times: touching ops count as concurrent), in a doubly
    linked list headed by node 0. Linearizing an op lifts its call and return
    out of the list; backtracking unlifts them. ``cache`` holds every
    (linearized bitmask, register value) already explored.
    """
    n = len(steps)
    events = sorted([(starts[i], 0, i) for i in range(n)] + [(ends[i], 1, i) for i in range(n)])
    m = 2 * n
    nxt = list(range(1, m + 2))
    nxt[m] = -1
    prv = list(range(-1, m))
    op_of = [0] * (m + 1)
    match = [0] * (m + 1)        # call node -> its return node; 0 for return nodes
    call_node = [0] * n
    for k, (_t, kind, i) in enumerate(events, 1):
        op_of[k] = i
        if kind == 0:
            call_node[i] = k
    for k, (_t, kind, i) in enumerate(events, 1):
        if kind == 1:
            match[call_node[i]] = k
    optional = [e == math.inf for e in ends]
    bits = [1 << i for i in range(n)]

    def unlink(k: int) -> None:
        p, q = prv[k], nxt[k]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def relink(k: int) -> None:
        p, q = prv[k], nxt[k]
        nxt[p] = k
        if q != -1:
            prv[q] = k

    state: Value = None
    linearized = 0
    cache: set[tuple[int, Value]] = set()
    calls: list[tuple[int, Value]] = []
    best, stuck = -1, _Stuck(0, [], 0)
    node = nxt[0]
    while node != -1:
        i = op_of[node]
        r = match[node]
        if r:                                   # a call: try to linearize it now
            kind, a, b = steps[i]
            if kind == _R:
                good, new = state == a, state
            elif kind == _W:
                good, new = True, a
            elif kind == _CT:
                good, new = state == a, b
            else:
                good, new = state != a, state
            if good:
                key = (linearized ^ bits[i], new)
                if key not in cache:
                    cache.add(key)
                    calls.append((node, state))
                    state, linearized = new, key[0]
                    unlink(node)
                    unlink(r)
                    node = nxt[0]
                    continue
            node = nxt[node]
            continue
        if optional[i]:                         # only unknown ops remain: all required placed
            return None
        if node > best:                         # a return before its op could be placed
            best, stuck = node, _Stuck(i, [state], len(calls))
        elif node == best and state not in stuck.states and len(stuck.states) < 8:
            stuck.states.append(state)
        if not calls:
            return stuck
        node, state = calls.pop()
        linearized ^= bits[op_of[node]]
        relink(match[node])
        relink(node)
        node = nxt[node]
    return None


def _check_key(key: Hashable, ops: list[Op]) -> tuple[bool, str]:
    kept = [(op, s) for op in ops for s in [_prepare(op)] if s is not None]
    steps = [s for _op, s in kept]
    starts = [op.start for op, _s in kept]
    ends = [op.end if (op.status == OK and op.end is not None) else math.inf for op, _s in kept]
    stuck = _search(steps, starts, ends)
    if stuck is None:
        return True, "key %r: %d ops linearizable" % (key, len(kept))
    live = [op for op, _s in kept]
    bad = live[stuck.op]
    t0 = min(op.start for op in ops)
    bad_end = bad.end if bad.end is not None else math.inf
    near = set(range(max(0, stuck.op - 6), min(len(live), stuck.op + 6)))
    overlap = [j for j, op in enumerate(live)
               if op.start <= bad_end and (ends[j] >= bad.start)]
    near.update(sorted(overlap, key=lambda j: abs(j - stuck.op))[:12])
    lines = ["key %r: not linearizable: op #%d (%s) could not be linearized" % (
                 key, bad.index, bad.summary()),
             "the furthest consistent orders placed %d of %d ops and left the register at %s" % (
                 stuck.placed, len(live), ", ".join(repr(s) for s in stuck.states)),
             "ops around it (ms from the key's first op; '?' = no known end):"]
    for j in sorted(near):
        mark = "  <-- could not be linearized" if j == stuck.op else ""
        lines.append("  %s %s%s" % (">" if j == stuck.op else " ", live[j].describe(t0), mark))
    return False, "\n".join(lines)


def check_linearizable(history: OpSource, key: Optional[Hashable] = None) -> tuple[bool, str]:
    """Check each key's ops (or only ``key``'s) form a linearizable register.

    Failed ops and unknown reads are dropped; an unknown write/cas may take
    effect at any point after its start, or never. Returns ``(ok, message)``;
    on failure the message names the key and shows the ops around the one the
    search could not place.
    """
    groups = _by_key(history)
    if key is not None:
        groups = {key: groups.get(key, [])}
    total = 0
    for k, ops in groups.items():
        good, msg = _check_key(k, ops)
        if not good:
            return False, msg
        total += len(ops)
    return True, "linearizable: %d ops on %d keys" % (total, len(groups))


# ---------------------------------------------------------------- lost writes
_NOTHING = object()


def _written(op: Op) -> Any:
    """The value ``op`` may have left in its register, or _NOTHING."""
    if op.status == FAIL:
        return _NOTHING
    if op.f == WRITE:
        return op.value
    if op.f == CAS and (op.status != OK or op.result is True):
        return op.value[1]
    return _NOTHING


def _latest_end(op: Op) -> float:
    return op.end if (op.status == OK and op.end is not None) else math.inf


def lost_writes(history: OpSource, final_reads: Mapping[Hashable, Value]) -> list[Op]:
    """The acknowledged writes that the final reads show were lost.

    For each key in ``final_reads`` (read after every op ended), an explainer
    is any op that may have left the final value: an ok or unknown write of
    it, or an ok-True or unknown cas to it (unknown ops count as never
    ending). An acknowledged write/cas-True ``w`` is lost iff every explainer
    ended before ``w`` started: each of them then precedes ``w`` in every
    linearization, so the final value should be ``w``'s or a later one. Sound:
    a write that could still be the one before the final value is never
    reported. A final None is explained by nothing (there are no deletes).
    Keys not in ``final_reads`` are not checked.
    """
    groups = _by_key(history)
    lost: list[Op] = []
    for key, final in final_reads.items():
        ops = groups.get(key, [])
        ends = [_latest_end(op) for op in ops if final is not None and _written(op) == final]
        explained_until = max(ends, default=-math.inf)
        for op in ops:
            acked = op.status == OK and (op.f == WRITE or (op.f == CAS and op.result is True))
            if acked and op.start > explained_until:
                lost.append(op)
    return sorted(lost, key=lambda o: o.index)


# ---------------------------------------------------------------- split brain
def two_primaries(acks: Iterable[tuple[Hashable, Hashable, Hashable]]) -> list[tuple[Hashable, Hashable]]:
    """The (shard, term) pairs for which more than one node acknowledged writes.

    ``acks`` holds (shard, term, node) records; pairs come back in the order
    first seen.
    """
    nodes: dict[tuple[Hashable, Hashable], set[Hashable]] = {}
    for shard, term, node in acks:
        nodes.setdefault((shard, term), set()).add(node)
    return [pair for pair, who in nodes.items() if len(who) > 1]
