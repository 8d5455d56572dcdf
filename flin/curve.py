"""CURVE key files, shared by every side: make them, load them, and make a
client socket pin its server's key. No server code here, so that the client
imports it without the router's authenticator (SECURITY.md has the threat model).

Key files are pyzmq's certificate format (``zmq.auth.create_certificates``):
``NAME.key`` holds a public key, ``NAME.key_secret`` the key pair.
``flin keygen DIR`` writes::

    DIR/server.key_secret     the router's pair   (flin start --curve-secret)
    DIR/server.key            its public key      (clients: --server-key)
    DIR/client.key_secret     a client's pair     (clients: --client-key)
    DIR/authorized/client.key its public key      (flin start --authorized-keys DIR/authorized)

The router-worker link uses the same layout with the names ``router`` and
``worker`` (``flin keygen DIR --server router --client worker``), in the
folder given as ``--backend-keys``.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, NamedTuple, overload

import zmq

AUTHORIZED = "authorized"           # keygen's folder of authorised public keys
BACK_SERVER, BACK_CLIENT = "router", "worker"   # key names in a --backend-keys folder


class CurveKeys(NamedTuple):
    """What a CURVE client needs: the server's public key and its own pair (z85)."""

    server: bytes
    public: bytes
    secret: bytes


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


@overload
def client_keys(server_key: None, client_keys: None) -> None: ...
@overload
def client_keys(server_key: Any, client_keys: Any) -> CurveKeys: ...
def client_keys(server_key: Any, client_keys: Any) -> CurveKeys | None:
    """Load a client's CURVE settings (None: plain connection)."""
    if server_key is None and client_keys is None:
        return None
    if server_key is None or client_keys is None:
        raise ValueError("CURVE needs both the server's public key and the client's key pair")
    return CurveKeys(load_public_key(server_key), *load_key_pair(client_keys))


def backend_client_keys(folder: str) -> CurveKeys:
    """A worker's keys for the router-worker link, from a ``--backend-keys`` folder."""
    return client_keys(os.path.join(folder, BACK_SERVER + ".key"),
                       os.path.join(folder, BACK_CLIENT + ".key_secret"))


# -- sockets --------------------------------------------------------------------------
def secure_client(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of the server whose public key it pins
    (before it connects). No keys: a plain connection."""
    if keys is None:
        return
    sock.curve_serverkey = keys.server
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
