"""Who may connect, and how every socket that faces a peer is secured.

SECURITY.md has the threat model; this module is its code:

1. **The bind check.** A client endpoint other hosts can reach is refused
   unless CURVE is on (or ``--insecure`` says the risk is accepted).
2. **CurveZMQ.** The router's sockets are CURVE servers. Their ZAP handler
   (a ``zmq.auth`` thread inside the router process) accepts only the public
   keys found in an authorised-keys folder; a client or worker pins the
   server's public key. An unknown key, or none, fails the handshake: no
   request from it is ever read.
3. **Caps.** ``MAXMSGSIZE`` on the client endpoint, so libzmq drops a peer
   that announces a frame past ``protocol.MAX_MESSAGE`` before allocating
   it; the msgpack limits are in ``protocol.decode_request``.

Each link is set up by one function here, so that moving workers to other
hosts changes the endpoint, not the code: ``secure_frontend`` and
``secure_backend`` (router), ``secure_worker`` (shard worker),
``secure_client`` (``flin.Client``).

Key files are pyzmq's certificate format (``zmq.auth.create_certificates``):
``NAME.key`` holds a public key, ``NAME.key_secret`` the key pair.
``flin keygen DIR`` writes::

    DIR/server.key_secret     the router's pair   (flin start --curve-secret)
    DIR/server.key            its public key      (clients: --server-key)
    DIR/client.key_secret     a client's pair     (clients: --client-key)
    DIR/authorized/client.key its public key      (flin start --authorized-keys DIR/authorized)

The router–worker link uses the same layout with the names ``router`` and
``worker`` (``flin keygen DIR --server router --client worker``), in the
folder given as ``--backend-keys``.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from typing import Any, NamedTuple

import zmq

from . import protocol
from .config import Config

log = logging.getLogger("flin.security")

AUTHORIZED = "authorized"           # keygen's folder of authorised public keys
FRONT_DOMAIN = "flin"               # ZAP domain of the client endpoint
BACK_DOMAIN = "flin-backend"        # ZAP domain of the router-worker link
BACK_SERVER, BACK_CLIENT = "router", "worker"   # key names in a --backend-keys folder


class CurveKeys(NamedTuple):
    """What a CURVE client needs: the server's public key and its own pair (z85)."""

    server: bytes
    public: bytes
    secret: bytes


# -- the bind check -------------------------------------------------------------------
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


def check_bind(cfg: Config) -> None:
    """Refuse a non-local client endpoint without authentication; check the
    key files before any process starts. Raises ``ValueError`` saying why."""
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
    if is_local(cfg.bind) or cfg.curve_secret:
        return
    if cfg.insecure:
        log.warning("INSECURE: %s is reachable from other hosts and nothing "
                    "authenticates or encrypts its clients", cfg.bind)
        return
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


# -- key files ------------------------------------------------------------------------
def keygen(folder: str, server: str = "server", clients: tuple[str, ...] = ("client",)) -> list[str]:
    """Write key pairs into ``folder`` (owner-only): the server's unless it
    exists (so clients can be added later), and each client's, whose public
    key is also copied into ``folder/authorized``. Returns the files written.
    Raises ``FileExistsError`` rather than overwrite a client's keys."""
    from zmq.auth import create_certificates
    for name in (server, *clients):
        if not name or os.sep in name or name.startswith("."):
            raise ValueError("bad key name %r" % name)
    auth_dir = os.path.join(folder, AUTHORIZED)
    os.makedirs(folder, mode=0o700, exist_ok=True)   # an existing folder keeps its mode;
    os.makedirs(auth_dir, mode=0o700, exist_ok=True)  # the files are owner-only regardless
    for name in clients:
        if os.path.exists(os.path.join(folder, name + ".key_secret")):
            raise FileExistsError("%s already has keys for %r" % (folder, name))
    written = []
    names = list(clients)
    if not os.path.exists(os.path.join(folder, server + ".key_secret")):
        names.insert(0, server)
    old = os.umask(0o077)   # the secret file is never readable by others, even briefly
    try:
        for name in names:
            public, secret = create_certificates(folder, name)
            written += [secret, public]
            if name != server:
                copy = os.path.join(auth_dir, name + ".key")
                shutil.copyfile(public, copy)
                written.append(copy)
    finally:
        os.umask(old)
    return written


def _z85(key: Any) -> bytes | None:
    """``key`` as z85 bytes if it looks like a key (40 characters), else None."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes) and len(key) == 40:
        return key
    return None


def load_public_key(spec: str | bytes | os.PathLike) -> bytes:
    """A public key (z85): given as its 40 characters, or a key file to read."""
    key = _z85(spec)
    if key is not None and not os.path.exists(os.fsdecode(spec)):
        return key
    from zmq.auth import load_certificate
    return load_certificate(os.fsdecode(spec))[0]


def load_key_pair(spec: Any) -> tuple[bytes, bytes]:
    """``(public, secret)`` (z85): given as a pair, or a ``.key_secret`` file."""
    if isinstance(spec, (tuple, list)):
        public, secret = (_z85(k) for k in spec)
        if public is None or secret is None:
            raise ValueError("a key pair is two 40-character z85 keys")
        return public, secret
    from zmq.auth import load_certificate
    public, secret = load_certificate(os.fsdecode(spec))
    if not secret:
        raise ValueError("%s holds no secret key (use the .key_secret file)" % os.fsdecode(spec))
    return public, secret


def client_keys(server_key: Any, client_keys: Any) -> CurveKeys | None:
    """Load a client's CURVE settings (None: plain connection)."""
    if server_key is None and client_keys is None:
        return None
    if server_key is None or client_keys is None:
        raise ValueError("CURVE needs both the server's public key and the client's key pair")
    return CurveKeys(load_public_key(server_key), *load_key_pair(client_keys))


# -- sockets --------------------------------------------------------------------------
def secure_client(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of the server whose public key it pins
    (before it connects). No keys: a plain connection."""
    if keys is None:
        return
    sock.curve_serverkey = keys.server
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


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


def frontend_socket(ctx: zmq.Context, gate: Gatekeeper, cfg: Config) -> zmq.Socket:
    """The router's bound ROUTER socket for clients. ROUTER_MANDATORY: a reply
    for a client that left raises instead of vanishing. No ROUTER_HANDOVER: a
    peer that claims a connected client's identity is ignored, so it cannot
    take over its replies."""
    front = ctx.socket(zmq.ROUTER)
    front.setsockopt(zmq.ROUTER_MANDATORY, 1)
    front.setsockopt(zmq.LINGER, 1000)
    front.setsockopt(zmq.SNDHWM, 100_000)
    front.setsockopt(zmq.RCVHWM, 100_000)
    secure_frontend(gate, front, cfg)
    front.bind(cfg.bind)
    return front


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
    secure_backend(gate, back, cfg)
    back.bind(cfg.backend)
    return back


def worker_socket(ctx: zmq.Context, cfg: Config, shard: int) -> zmq.Socket:
    """A worker's DEALER on the ZeroMQ link, connected to the router."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"shard-%d" % shard)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    secure_worker(sock, cfg)
    sock.connect(cfg.backend)
    return sock


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


def secure_worker(sock: zmq.Socket, cfg: Config) -> None:
    """A worker's end of the link: a CURVE client of the router when ``backend_keys`` is set."""
    if cfg.backend_keys:
        secure_client(sock, client_keys(
            os.path.join(cfg.backend_keys, BACK_SERVER + ".key"),
            os.path.join(cfg.backend_keys, BACK_CLIENT + ".key_secret")))
