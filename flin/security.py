"""Who may connect: the bind check (CURVE keys come with the security issue)."""
from __future__ import annotations

import ipaddress
import logging

from .config import Config

log = logging.getLogger("flin.security")


def is_local(endpoint: str) -> bool:
    """True for ipc:// and inproc:// endpoints and tcp:// on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a hostname: not provably local


def check_bind(cfg: Config) -> None:
    """Refuse a non-local client endpoint without authentication."""
    if is_local(cfg.bind):
        return
    if cfg.insecure:
        log.warning("INSECURE: %s is reachable from other hosts and nothing "
                    "authenticates or encrypts its clients", cfg.bind)
        return
    raise ValueError(
        "refusing to bind %s: it is not loopback or ipc, and clients would be "
        "neither authenticated nor encrypted. Bind to tcp://127.0.0.1:PORT or "
        "ipc://PATH, or pass --insecure to accept the risk." % cfg.bind)
