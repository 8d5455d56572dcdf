"""Process helpers (Linux): forking a supervised child safely, naming it, tying
its life to the supervisor's, and reading the process table."""
from __future__ import annotations

import ctypes
import os
import resource
import signal

from .logs import set_log_role

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def become_child(name: str) -> None:
    """Name this forked process and have the kernel SIGTERM it if the
    supervisor dies, so that a SIGKILLed supervisor leaves no orphans.
    Its log lines carry ``name`` without the ``flin-`` prefix."""
    set_log_role(name[5:] if name.startswith("flin-") else name)
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # the supervisor blocked these across fork(): a stop signal sent in that
    # window is delivered now, to this process's own (default) handling
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the supervisor died before prctl took effect


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
parent_pid: int | None = None   # the supervisor's pid, set by it before each fork


def fork_child() -> int:
    """``os.fork()`` with the stop signals blocked across it, so that a child
    never runs the supervisor's handlers; ``become_child`` unblocks them."""
    global parent_pid
    parent_pid = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return pid


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


_NOFILE_CAP = 1 << 20     # never ask for more open files than this, whatever the hard limit


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children
    inherit it), as Redis does for ``maxclients``; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _NOFILE_CAP if hard == resource.RLIM_INFINITY else min(hard, _NOFILE_CAP)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft
