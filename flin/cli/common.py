"""What every ``flin`` command shares: exit codes, the connection options,
the argument types (``BYTES``: any bytes, ``Seconds``: finite), and
``run_client``, which turns failures into one ``flin: ...`` line and an exit code.

Exit codes: 0 ok, 1 key not found (``get``), 2 usage (a bad option or
argument, a malformed endpoint, a number out of range), 3 cannot reach the
cluster, 4 the cluster failed the request (it answered with an error;
``flin stop``: it did not stop within ``--wait``).
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable, TypeVar

import click

from .. import errors
from ..client import Client
from ..protocol import DEFAULT_ENDPOINT

T = TypeVar("T")

EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER = 1, 2, 3, 4


class _Bytes(click.ParamType):
    """An argument as the bytes given on the command line: Python decoded argv
    with ``surrogateescape``, and ``os.fsencode`` undoes it, so a key or value
    need not be UTF-8."""

    name = "bytes"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> bytes:
        return value if isinstance(value, bytes) else os.fsencode(value)


BYTES = _Bytes()


class Finite(click.FloatRange):
    """A finite number in a range (``FloatRange`` lets nan and inf through)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        x = super().convert(value, param, ctx)
        if not math.isfinite(x):
            self.fail("%s is not a finite number of %s" % (value, self.name), param, ctx)
        return x


class Seconds(Finite):
    """A finite number of seconds in a range."""

    name = "seconds"


class MiB(Finite):
    """A finite size in MiB, at most 1 TiB unless told."""

    name = "MiB"

    def __init__(self, min: float = 0, max: float = float(1 << 20)) -> None:
        super().__init__(min, max)


class Routers(click.ParamType):
    """``auto`` (``config.auto_routers``: about one per 4 cores) or a count
    in 1..``MAX_ROUTERS``."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from ..config import MAX_ROUTERS, auto_routers
        if isinstance(value, int):
            n = value
        elif str(value).strip().lower() == "auto":
            return auto_routers()
        else:
            try:
                n = int(str(value))
            except ValueError:
                self.fail("%r is not 'auto' or a number of routers" % value, param, ctx)
        if not 1 <= n <= MAX_ROUTERS:
            self.fail("%d routers: give 1..%d (or auto)" % (n, MAX_ROUTERS), param, ctx)
        return n


def shown(data: bytes) -> str:
    """Bytes as text for a message: UTF-8, anything else escaped (``\\xff``)."""
    return data.decode("utf-8", "backslashreplace")

_endpoint = click.option("--endpoint", "-e", default=DEFAULT_ENDPOINT, show_default=True,
                         envvar="FLIN_ENDPOINT", help="Router endpoint (tcp:// or ipc://).")


def _keep(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Park a connection option where ``run_client`` finds it, so that commands
    need not pass it along."""
    ctx.meta["flin." + (param.name or "")] = value
    return value


key_file = click.Path(exists=True, dir_okay=False)
_server_key = click.option("--server-key", type=key_file, envvar="FLIN_SERVER_KEY",
                           expose_value=False, callback=_keep,
                           help="The router's CURVE public key file (server.key).")
_client_key = click.option("--client-key", type=key_file, envvar="FLIN_CLIENT_KEY",
                           expose_value=False, callback=_keep,
                           help="This client's CURVE key pair file (NAME.key_secret).")


replica_opt = click.option("--replica", is_flag=True, expose_value=False, callback=_keep,
                           help="Read from any copy of the key's shard (replicas: may be stale).")


def endpoint_opt(f: Callable) -> Callable:
    """--endpoint, and the CURVE keys to connect with."""
    return _endpoint(_server_key(_client_key(f)))


timeout_opt = click.option("--timeout", default=5.0, show_default=True, envvar="FLIN_TIMEOUT",
                           type=Seconds(0, min_open=True), help="Seconds to wait for the cluster.")
data_opt = click.option("--data", "-d", default="./data", show_default=True, envvar="FLIN_DATA",
                        type=click.Path(file_okay=False), help="Data folder.")


def out(data: bytes) -> None:
    """Write raw bytes and a newline to stdout."""
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def abspath(path: str | None) -> str | None:
    """A path that still holds after --detach changes the working folder."""
    return None if path is None else os.path.abspath(path)


def run_client(endpoint: str, timeout: float, fn: Callable[[Client], T]) -> T:
    """Call ``fn`` with a client of the router at ``endpoint`` alone (a command
    is a few calls, and ``flin stats`` shows that router's own figures);
    turn failures into messages and exit codes."""
    meta = click.get_current_context().meta
    try:
        client_ = Client(endpoint, timeout=timeout, server_key=meta.get("flin.server_key"),
                         client_keys=meta.get("flin.client_key"), discover=False,
                         read_from="replica" if meta.get("flin.replica") else "primary")
    except errors.InvalidArgument as exc:
        raise click.UsageError(str(exc))
    except (ValueError, OSError) as exc:
        raise click.UsageError("CURVE keys: %s" % exc)
    try:
        with client_ as client:
            return fn(client)
    except errors.InvalidArgument as exc:      # refused before anything was sent
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    except errors.TransportError as exc:
        click.echo("flin: cannot reach the cluster at %s: %s" % (endpoint, exc), err=True)
        sys.exit(EXIT_UNREACHABLE)
    except errors.ServerError as exc:
        click.echo("flin: %s: %s" % (type(exc).__name__, exc), err=True)
        sys.exit(EXIT_SERVER)


# -- cluster mode: how to reach etcd (``flin start --etcd``, ``flin cluster ...``) ----------
_ETCD_OPTIONS = [
    click.option("--etcd", envvar="FLIN_ETCD", metavar="URL[,URL...]",
                 help="etcd endpoints (http[s]://HOST:PORT): cluster mode, the topology there."),
    click.option("--cluster", envvar="FLIN_CLUSTER", help="The cluster's name in etcd."),
    click.option("--etcd-user", envvar="FLIN_ETCD_USER", help="etcd user name."),
    click.option("--etcd-password-file", envvar="FLIN_ETCD_PASSWORD_FILE",
                 type=click.Path(exists=True, dir_okay=False),
                 help="File whose first line is the etcd user's password."),
    click.option("--etcd-ca", envvar="FLIN_ETCD_CA", type=click.Path(exists=True, dir_okay=False),
                 help="CA bundle to check https:// etcd endpoints with."),
    click.option("--etcd-cert", envvar="FLIN_ETCD_CERT",
                 type=click.Path(exists=True, dir_okay=False),
                 help="Client certificate (PEM) for etcd; with --etcd-key."),
    click.option("--etcd-key", envvar="FLIN_ETCD_KEY", type=click.Path(exists=True, dir_okay=False),
                 help="The client certificate's key (PEM)."),
]
ETCD_FIELDS = ("etcd", "cluster", "etcd_user", "etcd_password_file", "etcd_ca", "etcd_cert",
               "etcd_key")


def etcd_opts(f: Callable) -> Callable:
    """The options that say how to reach etcd, and the cluster's name."""
    for opt in reversed(_ETCD_OPTIONS):
        f = opt(f)
    return f


def etcd_config(kw: dict) -> Any:
    """A ``Config`` holding the etcd options of ``kw`` (paths made absolute);
    ``UsageError`` when --etcd or --cluster is missing."""
    from ..config import Config
    if not kw.get("etcd") or not kw.get("cluster"):
        raise click.UsageError("cluster mode needs --etcd URL[,URL...] and --cluster NAME")
    if bool(kw.get("etcd_cert")) != bool(kw.get("etcd_key")):
        raise click.UsageError("--etcd-cert and --etcd-key go together")
    cfg = Config()
    for k in ETCD_FIELDS:
        setattr(cfg, k, abspath(kw[k]) if k in ("etcd_password_file", "etcd_ca", "etcd_cert",
                                                "etcd_key") else kw[k])
    return cfg
