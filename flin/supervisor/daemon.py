"""``flin start --detach``: run the supervisor in the background, logging to DATA/flin.log.

The classic double fork: the foreground process forks, the child starts a
new session and forks the daemon, which points stdin at /dev/null and
stdout/stderr (so logging, and anything a library prints) at ``DATA/flin.log``,
then runs the supervisor. The foreground process waits on a pipe for one
line: the ready line (printed, exit 0) or why it failed (exit 2). ``flin stop``
stops the daemon through its owner lock (``DATA/flin.lock``) like any supervisor.
"""
from __future__ import annotations

import os
import select
import sys
import time
from typing import Callable

from ..config import Config

LOG_NAME = "flin.log"
_READY_WAIT_S = 300.0      # longest the foreground waits for the ready line


def log_path(cfg: Config) -> str:
    return os.path.join(os.path.abspath(cfg.data), LOG_NAME)


def detach(cfg: Config) -> Callable[[str], None]:
    """Fork into the background. Returns only in the daemon, with the function
    to call with the ready line (or ``"error: why"``); the foreground process
    exits here once it has that line."""
    cfg.data = os.path.abspath(cfg.data)
    os.makedirs(cfg.data, exist_ok=True)
    path = log_path(cfg)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        os.waitpid(pid, 0)           # the middle process exits once the daemon is forked
        line = _read_line(r, _READY_WAIT_S)
        if line.startswith("flin: ") and " ready " in line:
            print(line + " (detached, log %s)" % path, flush=True)
            os._exit(0)
        why = line[len("error: "):] if line.startswith("error: ") else "the cluster did not start"
        print("flin: %s; see %s" % (why, path), file=sys.stderr, flush=True)
        os._exit(2)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)

    def notify(line: str) -> None:
        nonlocal w
        if w < 0:
            return
        try:
            os.write(w, (line.replace("\n", " ") + "\n").encode())
        finally:
            os.close(w)
            w = -1
    return notify


def _read_line(fd: int, timeout: float) -> str:
    """One line from ``fd`` ("" on EOF or timeout): children of the daemon
    inherit the pipe, so its end-of-file may never come."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data.split(b"\n", 1)[0].decode(errors="replace")
