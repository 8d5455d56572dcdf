"""The check before binding an ipc endpoint (catalogue 26), on real sockets:
a path a live process serves is in use, even with its backlog full; a
missing path or a stale socket file is free."""
from __future__ import annotations

import os
import socket

import pytest
import zmq

from flin.router.sockets import check_ipc_free


def test_live_stale_missing_and_busy(tmp_path):
    path = str(tmp_path / "s.sock")
    check_ipc_free("ipc://" + path)                    # missing: free
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(0)
    with pytest.raises(zmq.ZMQError, match="served by another live process"):
        check_ipc_free("ipc://" + path)
    waiting = []
    for _ in range(8):                                 # fill its backlog: connect says EAGAIN
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except OSError:
            c.close()
            break
        waiting.append(c)
    with pytest.raises(zmq.ZMQError, match="served by another live process"):
        check_ipc_free("ipc://" + path)
    for c in waiting:
        c.close()
    live.close()                                       # the file stays: stale
    assert os.path.exists(path)
    check_ipc_free("ipc://" + path)
    check_ipc_free("tcp://127.0.0.1:1")                # not ipc: not its business
