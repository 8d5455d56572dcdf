"""Helpers for the fault tests: find and signal a cluster's processes, wait for
shards, and (run as a script) the client processes of a write storm or of a
linearizability history. No mocks: real processes, real signals.

    python -m tests.support.faults storm ENDPOINT TAG SECONDS OUT.json
    python -m tests.support.faults lin   ENDPOINT TAG SECONDS SEED OUT.json KEY...
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import flin
from flin import errors
from flin.ring import Ring

from .cluster import ROOT

SOAK = os.environ.get("FLIN_SOAK") == "1"
_RINGS: dict[int, Ring] = {}


# -- processes ----------------------------------------------------------------
def _comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid: int) -> bool:
    s = _state(pid)
    return s not in ("", "Z", "X")


def _pids_named(cluster, prefix: str) -> dict[int, int]:
    """N -> pid of the live child named ``prefix`` + N."""
    out = {}
    for pid in cluster.child_pids():
        name = _comm(pid)
        if name.startswith(prefix) and alive(pid):
            out[int(name[len(prefix):])] = pid
    return out


def worker_pids(cluster) -> dict[int, int]:
    """shard id -> pid of its live worker, found by process name."""
    return _pids_named(cluster, "flin-shard-")


def router_pid(cluster) -> int | None:
    for pid in cluster.child_pids():
        if _comm(pid) == "flin-router" and alive(pid):
            return pid
    return None


def router_pids(cluster) -> dict[int, int]:
    """router id -> pid of that live router of a pool (``--routers`` > 1)."""
    return _pids_named(cluster, "flin-router-")


def wait_for(pred, timeout: float, what: str, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(every)


def wait_worker(cluster, shard: int, not_pid: int | None = None, timeout: float = 20.0) -> int:
    """The pid of shard's worker once one (other than ``not_pid``) runs."""
    def found():
        pid = worker_pids(cluster).get(shard)
        return pid if pid and pid != not_pid else None
    return wait_for(found, timeout, "a worker for shard %d" % shard)


def all_up(cluster, timeout: float = 30.0) -> dict:
    """Wait until the router reports every shard alive; the status."""
    with cluster.client(timeout=2.0, retries=0) as c:
        def ok():
            try:
                st = c.status()
            except errors.FlinError:
                return None
            return st if all(s["alive"] for s in st["shards"]) else None
        return wait_for(ok, timeout, "every shard up", every=0.1)


def shard_of(key: bytes, shards: int) -> int:
    if shards not in _RINGS:
        _RINGS[shards] = Ring(shards)
    return _RINGS[shards].shard(key)


def keys_on(shard: int, shards: int, n: int, prefix: str = "k") -> list[bytes]:
    """``n`` distinct keys owned by ``shard``."""
    out, i = [], 0
    while len(out) < n:
        k = b"%s:%d" % (prefix.encode(), i)
        if shard_of(k, shards) == shard:
            out.append(k)
        i += 1
    return out


def _chunks(acked: dict, n: int = 1000):
    keys = list(acked)
    for i in range(0, len(keys), n):
        yield keys[i:i + n]


def assert_all_there(client, acked: dict) -> None:
    """Every acknowledged key holds its acknowledged value (MGETs of 1000)."""
    for chunk in _chunks(acked):
        assert client.mget(chunk) == [acked[k] for k in chunk]


async def assert_all_there_async(db, acked: dict) -> None:
    """``assert_all_there`` through a ``flin.asyncio.Client``."""
    for chunk in _chunks(acked):
        assert await db.mget(chunk) == [acked[k] for k in chunk]


def vmrss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.faults", *args], cwd=ROOT)


def reap(procs: list[subprocess.Popen], timeout: float) -> None:
    """Wait for client processes; SIGKILL whatever is still running."""
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def killer(cluster, seconds: float, target: str = "worker", pause=(0.3, 0.8),
           seed: int = 0) -> int:
    """SIGKILL a random live worker (or the router) every ``pause`` seconds
    for ``seconds``; returns how many kills were delivered."""
    rnd = random.Random(seed)
    kills = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(rnd.uniform(*pause))
        if target == "router":
            pid = router_pid(cluster)
        else:
            pids = worker_pids(cluster)
            pid = rnd.choice(list(pids.values())) if pids else None
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
    return kills


# -- client processes -----------------------------------------------------------
def storm(endpoint: str, tag: str, seconds: float, out: str) -> None:
    """Overwrite a few hot keys and insert unique keys as fast as possible.
    Records, per key, the last acknowledged value and the values written
    since with an unknown outcome; reads its own keys back and records any
    answer that no write could explain."""
    c = flin.Client(endpoint, timeout=3.0, retries=3)
    rnd = random.Random(tag)
    hot = ["%s:h%d" % (tag, i) for i in range(40)]
    acked: dict[str, str] = {}       # overwrite keys: last acknowledged value
    maybe: dict[str, list] = {}      # values sent since, outcome unknown
    inserted: dict[str, str] = {}    # unique keys acknowledged
    stats = {"acked": 0, "failed": 0, "reads": 0, "read_errors": 0, "errors": {}}
    wrong: list = []
    seq = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seq += 1
        r = rnd.random()
        if r < 0.45:
            key, value = rnd.choice(hot), "%s:%d" % (tag, seq)
        elif r < 0.9:
            key, value = "%s:u%d" % (tag, seq), "v%d" % seq
        else:
            key = rnd.choice(hot)
            try:
                got = c.get(key)
                stats["reads"] += 1
            except errors.FlinError as exc:
                stats["read_errors"] += 1
                stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
                continue
            allowed = set(maybe.get(key, ()))
            allowed.add(acked.get(key))
            got_s = None if got is None else got.decode()
            if got_s not in allowed:
                wrong.append([key, got_s, sorted(a for a in allowed if a)])
            continue
        try:
            c.set(key, value)
        except errors.FlinError as exc:
            stats["failed"] += 1
            stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
            if key in acked or key.startswith(tag + ":h"):
                maybe.setdefault(key, []).append(value)
            continue
        stats["acked"] += 1
        if key.startswith(tag + ":h"):
            acked[key] = value
            maybe[key] = []
        else:
            inserted[key] = value
    c.close()
    with open(out, "w") as f:
        json.dump({"acked": acked, "maybe": maybe, "inserted": inserted,
                   "stats": stats, "wrong": wrong}, f)


def lin(endpoint: str, tag: str, seconds: float, seed: int, out: str, keys: list[str]) -> None:
    """Random GET/SET/CAS on ``keys``; records [key, op, arg, arg, invoke,
    complete, result] with complete None when the outcome is unknown, and
    drops operations that were refused without being applied."""
    c = flin.Client(endpoint, timeout=2.0, retries=0)
    rnd = random.Random(seed)
    hist: list = []
    seen: dict[str, list] = {k: [None] for k in keys}
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        key = rnd.choice(keys)
        r = rnd.random()
        t0 = time.monotonic()
        try:
            if r < 0.4:
                op, a, b = "get", None, None
                res = c.get(key)
                res = None if res is None else res.decode()
                seen[key].append(res)
            elif r < 0.7:
                op, a, b = "set", "%s-%d" % (tag, n), None
                res = c.set(key, a)
            else:
                op, a, b = "cas", rnd.choice(seen[key][-3:]), "%s-%d" % (tag, n)
                res = c.cas(key, a, b)
            t1 = time.monotonic()
        except (errors.OutcomeUnknown, errors.Timeout):
            res, t1 = None, None         # may or may not have happened
            if op == "get":
                continue                 # an unknown read constrains nothing
        except (errors.ShardUnavailable, errors.Overloaded, errors.ConnectionFailed):
            time.sleep(0.01)
            continue                     # refused: not applied
        hist.append([key, op, a, b, t0, t1, res])
        time.sleep(rnd.uniform(0.01, 0.05))   # a small history: the check is exponential
    c.close()
    with open(out, "w") as f:
        json.dump(hist, f)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "storm":
        storm(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    elif cmd == "lin":
        lin(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7:])
    else:
        raise SystemExit("unknown command %r" % cmd)
