"""Checks before any process starts: who could reach the client endpoint,
and whether the CURVE key files are complete and load.

A client endpoint other hosts can reach is refused unless CURVE is on (or
``--insecure`` says the risk is accepted); so is a RESP port other hosts can
reach, unless AUTH and TLS are on. SECURITY.md has the threat model.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl

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


def check_resp(cfg: Config) -> str:
    """The RESP port's rule, Redis's protected mode made strict: loopback, or
    AUTH required and TLS on, or ``--insecure``. Checks the password and
    certificate files load. Returns why it is allowed; ``ValueError`` if not."""
    if cfg.resp is None:
        return "off"
    host, port = cfg.resp_address
    if bool(cfg.resp_tls_cert) != bool(cfg.resp_tls_key):
        raise ValueError("--resp-tls-cert and --resp-tls-key go together")
    if cfg.resp_password_file:
        from ..router.resp import read_password
        read_password(cfg.resp_password_file)
        _check_secret_mode(cfg.resp_password_file)
    if cfg.resp_tls_cert:
        from ..router.resp import tls_context
        try:
            tls_context(cfg.resp_tls_cert, cfg.resp_tls_key or "")
        except ssl.SSLError as exc:
            raise ValueError("cannot load the RESP TLS certificate and key: %s" % exc) from None
        _check_secret_mode(cfg.resp_tls_key or "")
    if is_local("tcp://%s:%d" % (host, port)):
        return "local"
    if cfg.resp_password_file and cfg.resp_tls_cert:
        return "auth+tls"
    if cfg.insecure:
        log.warning("INSECURE: the Redis protocol on %s is reachable from other hosts "
                    "without %s", cfg.resp, " and ".join(
                        w for w, on in (("AUTH", cfg.resp_password_file),
                                        ("TLS", cfg.resp_tls_cert)) if not on))
        return "insecure"
    raise ValueError(
        "refusing the Redis protocol on %s: it is not loopback, and clients would not be "
        "%s. Pass --resp-password-file FILE and --resp-tls-cert/--resp-tls-key; or "
        "--resp 127.0.0.1:PORT; or --insecure to accept the risk." % (
            cfg.resp, "authenticated or encrypted" if not (cfg.resp_password_file or
                                                          cfg.resp_tls_cert)
            else "encrypted" if cfg.resp_password_file else "authenticated"))


def check_resp_free(cfg: Config) -> None:
    """Fail clearly if something listens on the RESP port already (an
    earlier Flin, a Redis): with SO_REUSEPORT the routers would share it."""
    if cfg.resp is None:
        return
    host, port = cfg.resp_address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ValueError("cannot listen for the Redis protocol on %s: %s (another Flin or a "
                         "Redis?); pass --resp HOST:PORT or --resp off"
                         % (cfg.resp, exc.strerror)) from None
    finally:
        probe.close()


def check_cluster_link(cfg: Config) -> None:
    """Cluster mode: the routers take shard workers' links on the advertised
    address; off loopback, only with CURVE (``--backend-keys``) or --insecure."""
    if not cfg.etcd or cfg.backend_keys:
        return
    if is_local(cfg.backend_of(0)):
        return
    if cfg.insecure:
        log.warning("INSECURE: the routers take shard workers' links on %s without CURVE: "
                    "anyone who reaches it can pose as a shard", cfg.backend_of(0))
        return
    raise ValueError(
        "refusing to take shard workers' links on %s without CURVE: the traffic between "
        "nodes would be neither authenticated nor encrypted. Give every node the same "
        "--backend-keys folder (flin keygen DIR --server router --client worker), or pass "
        "--insecure to accept the risk." % cfg.backend_of(0))


def check_bind(cfg: Config) -> str:
    """Refuse a non-local client endpoint without authentication; check the
    key files before any process starts. Returns why the bind is allowed:
    ``"local"``, ``"curve"`` or ``"insecure"`` (accepted with a warning).
    Raises ``ValueError`` saying why not."""
    check_curve(cfg)
    check_resp(cfg)
    check_cluster_link(cfg)
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
