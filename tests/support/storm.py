"""The fault tests' workload against a replicated cluster: client threads
that record a GET/SET/CAS history on a few registers (``jepsen.History``),
and a write storm of unique keys whose acknowledged writes are counted; then
the checks (lost acknowledged writes, linearizability, one primary per term)."""
from __future__ import annotations

import glob
import os
import random
import re
import signal
import threading
import time

import flin
from flin import errors
from flin.ring import Ring
from flin.supervisor.processes import descendants
from tests.support.jepsen import History, check_linearizable, lost_writes, two_primaries


class Storm:
    """``registers`` threads on the registers, ``writers`` threads writing
    unique keys, each through one of ``endpoints`` (the nodes not faulted)."""

    def __init__(self, endpoints: list[str], registers: int = 3, writers: int = 2,
                 timeout: float = 4.0) -> None:
        self.endpoints, self.timeout = endpoints, timeout
        tag = os.urandom(3).hex().encode()   # keys of their own: a history starts from None
        self.registers = [b"%s-r%d" % (tag, i) for i in range(6)]
        self.tag = tag
        self.history = History()
        self.acked: list[bytes] = []          # storm keys acknowledged
        self.unsure: list[bytes] = []         # storm keys whose write's outcome is unknown
        self.counts = {"ok": 0, "fail": 0, "info": 0}
        self.errors: dict[str, int] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._registers, args=(i,), daemon=True)
                        for i in range(registers)]
        self.threads += [threading.Thread(target=self._writer, args=(i,), daemon=True)
                         for i in range(writers)]

    def start(self) -> "Storm":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 10)

    def _client(self, i: int, retries: int = 0) -> flin.Client:
        # one attempt per op for the history: after a resend, the last
        # attempt's refusal says nothing of an earlier attempt's outcome.
        # FLIN_TEST_STORM_READ_FROM=replica: reads that may be stale
        return flin.Client(self.endpoints[i % len(self.endpoints)], timeout=self.timeout,
                           retries=retries, discover=False,
                           read_from=os.environ.get("FLIN_TEST_STORM_READ_FROM", "primary"))

    def _outcome(self, exc: Exception) -> str:
        name = type(exc).__name__
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1
        if isinstance(exc, (errors.OutcomeUnknown, errors.Timeout)):
            return "info"
        if isinstance(exc, (errors.ShardUnavailable, errors.Overloaded, errors.ShuttingDown,
                            errors.BadRequest, errors.ConnectionFailed)):
            return "fail"                 # refused before it was applied
        return "info"

    def _registers(self, i: int) -> None:
        rng = random.Random(i)
        seen: dict[bytes, bytes | None] = {}
        n = 0
        with self._client(i) as c:
            while not self.stopping.is_set():
                key = rng.choice(self.registers)
                n += 1
                value = b"p%d-%d" % (i, n)
                f = rng.choice(("read", "read", "write", "write", "cas"))
                arg = None if f == "read" else value if f == "write" else (seen.get(key), value)
                op = self.history.invoke("p%d" % i, key, f, arg)
                try:
                    if f == "read":
                        got = c.get(key)
                        seen[key] = got
                        self.history.ok(op, got)
                    elif f == "write":
                        c.set(key, value)
                        self.history.ok(op)
                    else:
                        self.history.ok(op, bool(c.cas(key, seen.get(key), value)))
                    status = "ok"
                except Exception as exc:
                    status = self._outcome(exc)
                    (self.history.fail if status == "fail" else self.history.info)(op)
                    time.sleep(0.02)
                with self.lock:
                    self.counts[status] += 1

    def _writer(self, i: int) -> None:
        n = 0
        with self._client(i + 1, retries=2) as c:
            while not self.stopping.is_set():
                n += 1
                key = b"%s-w%d-%d" % (self.tag, i, n)
                try:
                    c.set(key, key)
                    with self.lock:
                        self.acked.append(key)
                except Exception as exc:
                    if self._outcome(exc) == "info":
                        with self.lock:
                            self.unsure.append(key)
                    time.sleep(0.02)

    # -- the checks ------------------------------------------------------------------
    def check(self, c: flin.Client) -> dict:
        """Read everything back through ``c``; assert nothing acknowledged was
        lost and the registers' history is linearizable; return the figures."""
        finals = {k: _read(c, k) for k in self.registers}
        failed = []                      # every check that failed, not only the first
        lost = lost_writes(self.history, finals)
        if lost:
            failed.append("acknowledged register writes lost: %s" % [o.summary() for o in lost])
        missing = []
        for i in range(0, len(self.acked), 500):
            part = self.acked[i:i + 500]
            got = _retry(lambda: c.mget(part))
            missing += [k for k, v in zip(part, got) if v != k]
        if missing:
            failed.append("%d of %d acknowledged storm writes lost, e.g. %s"
                          % (len(missing), len(self.acked), missing[:5]))
        ok, why = check_linearizable(self.history)
        if not ok:
            failed.append(why)
        assert not failed, "\n".join(failed)
        return {"ops": len(self.history), "acked_writes": len(self.acked), **self.counts,
                "errors": dict(self.errors)}


def _retry(fn, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except errors.FlinError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read(c: flin.Client, key: bytes) -> bytes | None:
    return _retry(lambda: c.get(key))


def logged(folder: str, pattern: str) -> list[tuple[int, int, str]]:
    """``(shard, term, node)`` for every line matching ``pattern`` (groups:
    shard, term) of every node log in ``folder`` (every start of every node)."""
    out = []
    for path in glob.glob(os.path.join(folder, "*.log")):
        node = os.path.basename(path).rsplit("-", 1)[0]
        with open(path, errors="replace") as f:
            for m in re.finditer(pattern, f.read()):
                out.append((int(m.group(1)), int(m.group(2)), node))
    return out


def one_primary_per_term(folder: str) -> None:
    """No two nodes acknowledged writes of one shard in one term, nor did two
    nodes' agents each win one shard's election to the same term."""
    acked = two_primaries(logged(folder, r"shard (\d+): acknowledging writes in term (\d+)"))
    assert not acked, "two nodes acknowledged writes of a shard in one term: %s" % acked
    won = two_primaries(logged(folder, r"primary of shard (\d+), term (\d+)"))
    assert not won, "two nodes were elected primary of a shard in one term: %s" % won
    assert logged(folder, r"shard (\d+): acknowledging writes in term (\d+)"), \
        "no node logged acknowledging a write: the check looks at nothing"


def key_on(shard: int, shards: int, prefix: str = "f") -> bytes:
    """A key of ``shard``."""
    ring = Ring(shards)
    return next(k for k in (b"%s%d" % (prefix.encode(), i) for i in range(10_000))
                if ring.shard(k) == shard)


def signal_node(node, sig: int) -> None:
    """Send ``sig`` to a node's supervisor and every process under it."""
    pids = descendants(node.proc.pid) | {node.proc.pid}
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def pause(node) -> None:
    signal_node(node, signal.SIGSTOP)


def resume(node) -> None:
    signal_node(node, signal.SIGCONT)


def wait_written(c: flin.Client, key: bytes, since: float, limit: float = 30.0) -> float:
    """Write ``key`` until it is acknowledged; seconds from ``since``."""
    deadline = time.monotonic() + limit
    while True:
        try:
            c.set(key, b"probe")
            return time.monotonic() - since
        except errors.FlinError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
