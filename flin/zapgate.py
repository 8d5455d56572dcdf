"""The ZAP handler that admits only authorised CURVE keys: a ``zmq.auth``
thread in the process whose sockets it guards (a router, or a shard worker's
replication socket). SECURITY.md has the threat model."""
from __future__ import annotations

import logging
from typing import Any

import zmq

from .curve import load_key_pair

log = logging.getLogger("flin.security")

BACK_DOMAIN = "flin-backend"        # ZAP domain of the router-worker link, and the replicas'


class Gatekeeper:
    """The router's ZAP handler: a ``zmq.auth`` thread on the router's context,
    one authorised-keys folder per ZAP domain.

    Create it inside the router process (a thread does not survive ``fork``,
    and the supervisor forks) and before a CURVE socket binds: libzmq lets
    every key in while no ZAP handler listens. ``ZAP_ENFORCE_DOMAIN`` makes
    the socket refuse all instead, should the handler ever be missing."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx
        self.auth: Any = None

    def serve(self, sock: zmq.Socket, secret_file: str, authorized: str, domain: str) -> None:
        """Make ``sock`` (not yet bound) a CURVE server that accepts only the
        keys in ``authorized``."""
        public, secret = load_key_pair(secret_file)
        if self.auth is None:
            from zmq.auth.thread import ThreadAuthenticator
            self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("flin.zap"))
            self.auth.start()
        self.auth.configure_curve(domain=domain, location=authorized)
        if not self.auth.certs.get(domain):
            raise ValueError("no authorised keys loaded from %s" % authorized)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        sock.zap_domain = domain.encode()
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        log.info("CURVE on for domain %s: %d authorised keys", domain,
                 len(self.auth.certs[domain]))

    def stop(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
