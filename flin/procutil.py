"""Small process helpers shared by the supervisor's children (Linux)."""
from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def become_child(name: str) -> None:
    """Name this forked process and have the kernel SIGTERM it if the
    supervisor dies, so that a SIGKILLed supervisor leaves no orphans."""
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os._exit(1)
