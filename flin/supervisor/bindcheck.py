"""Checks before any process starts: who could reach the client endpoint,
and whether the CURVE key files are complete and load.

A client endpoint other hosts can reach is refused unless CURVE is on (or
``--insecure`` says the risk is accepted). SECURITY.md has the threat model.
"""
from __future__ import annotations

import ipaddress
import logging
import os

from ..config import Config
from ..curve import AUTHORIZED, BACK_CLIENT, BACK_SERVER, load_key_pair, load_public_key

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
        return False  # an interface name, a wildcard or a hostname: not provably local


def check_bind(cfg: Config) -> str:
    """Refuse a non-local client endpoint without authentication; check the
    key files before any process starts. Returns why the bind is allowed:
    ``"local"``, ``"curve"`` or ``"insecure"`` (accepted with a warning).
    Raises ``ValueError`` saying why not."""
    check_curve(cfg)
    if cfg.bind.startswith("ipc://"):
        folder = os.path.dirname(os.path.abspath(cfg.bind[len("ipc://"):]))
        try:
            if os.stat(folder).st_mode & 0o077:
                log.warning("%s is in %s, which other local users can open: they can "
                            "connect unless CURVE is on; prefer an owner-only (0700) "
                            "folder", cfg.bind, folder)
        except OSError:
            pass  # libzmq reports a missing folder when it binds
    if cfg.curve_secret:
        return "curve"
    if is_local(cfg.bind):
        return "local"
    if cfg.insecure:
        log.warning("INSECURE: %s is reachable from other hosts and nothing "
                    "authenticates or encrypts its clients", cfg.bind)
        return "insecure"
    raise ValueError(
        "refusing to bind %s: it is not loopback or ipc, and clients would be "
        "neither authenticated nor encrypted. Require client keys with "
        "`flin keygen KEYS` then --curve-secret KEYS/server.key_secret "
        "--authorized-keys KEYS/authorized; or bind to tcp://127.0.0.1:PORT or "
        "ipc://PATH; or pass --insecure to accept the risk." % cfg.bind)


def check_curve(cfg: Config) -> None:
    """The CURVE settings are complete and their files load."""
    if bool(cfg.curve_secret) != bool(cfg.authorized_keys):
        raise ValueError("--curve-secret and --authorized-keys go together")
    if cfg.curve_secret:
        load_key_pair(cfg.curve_secret)
        _check_secret_mode(cfg.curve_secret)
        _authorized(cfg.authorized_keys)
    if cfg.backend_keys:
        bk = cfg.backend_keys
        load_key_pair(os.path.join(bk, BACK_SERVER + ".key_secret"))
        load_key_pair(os.path.join(bk, BACK_CLIENT + ".key_secret"))
        load_public_key(os.path.join(bk, BACK_SERVER + ".key"))
        _authorized(os.path.join(bk, AUTHORIZED))


def _authorized(folder: str | None) -> dict:
    from zmq.auth import load_certificates
    if not folder or not os.path.isdir(folder):
        raise ValueError("authorised-keys folder %r does not exist" % folder)
    keys = load_certificates(folder)
    if not keys:
        raise ValueError("no public keys (*.key files) in %s: no client could connect" % folder)
    return keys


def _check_secret_mode(path: str) -> None:
    if os.stat(path).st_mode & 0o077:
        log.warning("%s (a secret key) can be read by other users: chmod 600 it", path)
