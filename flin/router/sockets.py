"""The router's bound sockets and who may connect to them.

The client endpoint (``frontend_socket``) caps frames at
``protocol.MAX_MESSAGE`` (``MAXMSGSIZE``: libzmq drops a peer that announces
a bigger frame before allocating it) and is a CURVE server when
``--curve-secret`` is given. The ZeroMQ worker link (``backend_socket``,
``--backend-keys``) is a CURVE server too. Either way the ZAP handler
(``Gatekeeper``, a ``zmq.auth`` thread inside the router process) admits only
the public keys in an authorised-keys folder; an unknown key, or none, fails
the handshake and no request from it is ever read. SECURITY.md has the
threat model.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket

import zmq

from .. import protocol
from ..config import Config
from ..curve import AUTHORIZED, BACK_SERVER
from ..zapgate import BACK_DOMAIN, Gatekeeper

log = logging.getLogger("flin.security")

FRONT_DOMAIN = "flin"               # ZAP domain of the client endpoint


def frontend_socket(ctx: zmq.Context, gate: Gatekeeper,
                    cfg: Config) -> tuple[zmq.Socket, int | None]:
    """The router's bound ROUTER socket for clients. ROUTER_MANDATORY: a reply
    for a client that left raises instead of vanishing. No ROUTER_HANDOVER: a
    peer that claims a connected client's identity is ignored, so it cannot
    take over its replies. Also returns the ipc claim (``claim_ipc``), which
    the router keeps open for its life."""
    front = ctx.socket(zmq.ROUTER)
    front.setsockopt(zmq.ROUTER_MANDATORY, 1)
    front.setsockopt(zmq.LINGER, 1000)
    front.setsockopt(zmq.SNDHWM, 1)   # ZeroMQ counts messages: the bytes are bounded in replies.py
    front.setsockopt(zmq.RCVHWM, 100_000)
    secure_frontend(gate, front, cfg)
    claim = claim_ipc(cfg.endpoint)
    try:
        check_ipc_free(cfg.endpoint)
        front.bind(cfg.endpoint)
    except BaseException:
        if claim is not None:
            os.close(claim)
        front.close(linger=0)
        raise
    return front, claim


def claim_ipc(endpoint: str) -> int | None:
    """Hold ``flock`` on ``PATH.lock`` beside an ipc endpoint for as long as
    this process serves it: two Flin routers binding one path at the same
    moment could both find it free (the probe in ``check_ipc_free`` is
    check-then-act); the lock lets one through. The descriptor, or None for
    other transports. Raises ``zmq.ZMQError(EADDRINUSE)``."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):] + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise zmq.ZMQError(exc.errno or errno.EACCES,
                           "cannot open %s: %s" % (path, exc.strerror)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise zmq.ZMQError(errno.EADDRINUSE, "%s is claimed by another live Flin router "
                           "(%s is locked); stop it or choose another path"
                           % (endpoint, path)) from None
    return fd


def check_ipc_free(endpoint: str) -> None:
    """Refuse an ipc:// path that a live process serves: libzmq would unlink
    it and bind anew, silently taking that server's new clients (tcp refuses
    a port in use by itself). A socket file nobody accepts on is stale, and
    libzmq replaces it. Raises ``zmq.ZMQError(EADDRINUSE)``."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        # missing, not a socket, or nobody accepting: free to bind. A full
        # backlog (EAGAIN) or a slow accept means a live server: in use.
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOTDIR):
            return
    finally:
        probe.close()
    raise zmq.ZMQError(errno.EADDRINUSE, "%s is served by another live process "
                       "(another Flin cluster?); stop it or choose another path" % endpoint)


def backend_socket(ctx: zmq.Context, gate: Gatekeeper, cfg: Config) -> zmq.Socket:
    """The router's bound ROUTER socket for workers on the ZeroMQ link
    (``links.ZmqLinks``). ROUTER_MANDATORY: a batch for a worker that is not
    connected raises; ROUTER_HANDOVER: a restarted worker takes its identity back."""
    back = ctx.socket(zmq.ROUTER)
    back.setsockopt(zmq.ROUTER_MANDATORY, 1)
    back.setsockopt(zmq.ROUTER_HANDOVER, 1)
    back.setsockopt(zmq.LINGER, 1000)
    back.setsockopt(zmq.SNDHWM, 0)
    back.setsockopt(zmq.RCVHWM, 0)
    back.setsockopt(zmq.HEARTBEAT_IVL, 1000)     # a worker's host that vanishes: dropped
    back.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)  # in 3 s, its batches failed then
    secure_backend(gate, back, cfg)
    back.bind(cfg.backend)
    return back


def secure_frontend(gate: Gatekeeper, sock: zmq.Socket, cfg: Config) -> None:
    """The client endpoint: capped frames, CURVE when configured."""
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
    if cfg.curve_secret:
        gate.serve(sock, cfg.curve_secret, cfg.authorized_keys or "", FRONT_DOMAIN)


def secure_backend(gate: Gatekeeper, sock: zmq.Socket, cfg: Config) -> None:
    """The router's end of the worker link: CURVE when ``backend_keys`` is set."""
    if cfg.backend_keys:
        gate.serve(sock, os.path.join(cfg.backend_keys, BACK_SERVER + ".key_secret"),
                   os.path.join(cfg.backend_keys, AUTHORIZED), BACK_DOMAIN)
