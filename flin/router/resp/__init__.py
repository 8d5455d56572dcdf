"""The Redis protocol (RESP2, and RESP3 after ``HELLO 3``) on a TCP port of
every router: redis-cli, redis-py and redis-benchmark talk to Flin unchanged.

Owns: reading requests (``parse.py``: hiredis, and a careful path for split,
inline and hostile input), the socket and its connections (``server.py``),
what each Redis command means in Flin (``commands.py``), the replies
(``reply.py``) and INFO (``info.py``). The router routes the commands like
any client's (``loop.Router.on_resp``).
May import: what ``flin.router`` may, and ``hiredis``; never the router's
loop (it is handed in).
"""
from __future__ import annotations

import logging
import ssl
from typing import Any

from ...config import Config
from ..clients import client_limit
from .commands import Commands
from .server import RespServer

log = logging.getLogger("flin.router")


def read_password(path: str) -> bytes:
    """The first line of ``path`` (what AUTH must give); ``ValueError`` if empty."""
    with open(path, "rb") as f:
        password = f.readline().rstrip(b"\r\n")
    if not password:
        raise ValueError("%s: the first line (the RESP password) is empty" % path)
    return password


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def open_resp(cfg: Config, router: Any) -> tuple[RespServer, Commands]:
    """The RESP listener of this router (``OSError`` if it cannot bind) and
    its command table."""
    from ..stats import router_snapshot
    host, port = cfg.resp_address
    password = read_password(cfg.resp_password_file) if cfg.resp_password_file else None
    tls = tls_context(cfg.resp_tls_cert, cfg.resp_tls_key or "") if cfg.resp_tls_cert else None
    server = RespServer(host, port, cfg.routers > 1, client_limit(cfg.max_clients, cfg.shards)[0],
                        cfg.resp_timeout, tls, password is not None)
    commands = Commands(lambda: router_snapshot(router), password, server.port, cfg.resp_timeout,
                        cfg.sync)
    return server, commands
