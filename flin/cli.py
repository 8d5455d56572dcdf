"""``flin``: the command line. Options map 1:1 onto ``Config``; every option
can come from a ``FLIN_*`` environment variable.

Exit codes: 0 ok, 1 key not found (``get``), 2 usage, 3 cannot reach the
cluster, 4 the server answered with an error.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import click

from . import errors
from .client import Client
from .config import DEFAULT_ENDPOINT, Config

EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER = 1, 2, 3, 4

_endpoint = click.option("--endpoint", "-e", default=DEFAULT_ENDPOINT, show_default=True,
                         envvar="FLIN_ENDPOINT", help="Router endpoint (tcp:// or ipc://).")


def _keep(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Park a connection option where ``_run`` finds it, so that commands
    need not pass it along."""
    ctx.meta["flin." + (param.name or "")] = value
    return value


_key_file = click.Path(exists=True, dir_okay=False)
_server_key = click.option("--server-key", type=_key_file, envvar="FLIN_SERVER_KEY",
                           expose_value=False, callback=_keep,
                           help="The router's CURVE public key file (server.key).")
_client_key = click.option("--client-key", type=_key_file, envvar="FLIN_CLIENT_KEY",
                           expose_value=False, callback=_keep,
                           help="This client's CURVE key pair file (NAME.key_secret).")


def endpoint_opt(f: Callable) -> Callable:
    """--endpoint, and the CURVE keys to connect with."""
    return _endpoint(_server_key(_client_key(f)))


timeout_opt = click.option("--timeout", default=5.0, show_default=True, envvar="FLIN_TIMEOUT",
                           help="Seconds to wait for the cluster.")
data_opt = click.option("--data", "-d", default="./data", show_default=True, envvar="FLIN_DATA",
                        type=click.Path(file_okay=False), help="Data folder.")


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def _abs(path: str | None) -> str | None:
    """A path that still holds after --detach changes the working folder."""
    return None if path is None else os.path.abspath(path)


def _run(endpoint: str, timeout: float, fn: Callable[[Client], Any]) -> Any:
    """Call ``fn`` with a client; turn failures into messages and exit codes."""
    meta = click.get_current_context().meta
    try:
        client_ = Client(endpoint, timeout=timeout, server_key=meta.get("flin.server_key"),
                         client_keys=meta.get("flin.client_key"))
    except (ValueError, OSError) as exc:
        raise click.UsageError("CURVE keys: %s" % exc)
    try:
        with client_ as client:
            return fn(client)
    except errors.TransportError as exc:
        click.echo("flin: cannot reach the cluster at %s: %s" % (endpoint, exc), err=True)
        sys.exit(EXIT_UNREACHABLE)
    except errors.ServerError as exc:
        click.echo("flin: %s: %s" % (type(exc).__name__, exc), err=True)
        sys.exit(EXIT_SERVER)


@click.group(context_settings={"auto_envvar_prefix": "FLIN", "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flin")
def main() -> None:
    """Flin: a persistent, sharded key-value store."""


@main.command()
@data_opt
@click.option("--shards", default=64, show_default=True, envvar="FLIN_SHARDS", type=click.IntRange(1, 4096),
              help="Shard worker processes (fixed once the data folder exists).")
@click.option("--bind", default=DEFAULT_ENDPOINT, show_default=True, envvar="FLIN_BIND",
              help="Client endpoint: tcp://HOST:PORT or ipc://PATH.")
@click.option("--sync", is_flag=True, help="fsync every write batch before acknowledging it.")
@click.option("--read-cache-mb", default=64.0, show_default=True, type=click.FloatRange(0),
              help="The router's cache of hot values in MiB (0 = off).")
@click.option("--shard-timeout", default=2.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds before an unanswered shard batch fails as OutcomeUnknown.")
@click.option("--shard-queue", default=100_000, show_default=True, type=click.IntRange(1),
              help="Ops queued for one shard before new ones get Overloaded.")
@click.option("--write-buffer-mb", default=1.0, show_default=True, type=click.FloatRange(0.1),
              help="LevelDB memtable per shard, MiB (more: fewer compactions, more memory).")
@click.option("--block-cache-mb", default=1.0, show_default=True, type=click.FloatRange(0),
              help="LevelDB block cache per shard, MiB.")
@click.option("--compression/--no-compression", default=True, show_default=True,
              help="Snappy-compress LevelDB blocks.")
@click.option("--shard-depth", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Batches in flight per shard; more ops coalesce meanwhile.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind without authentication.")
@click.option("--curve-secret", type=_key_file,
              help="The router's CURVE key pair (server.key_secret): encrypt the client "
                   "endpoint and admit only --authorized-keys.")
@click.option("--authorized-keys", type=click.Path(exists=True, file_okay=False),
              help="Folder of client public keys (*.key) admitted with --curve-secret.")
@click.option("--backend-keys", type=click.Path(exists=True, file_okay=False),
              help="Folder of router/worker key pairs (flin keygen DIR --server router "
                   "--client worker): CURVE on the router-worker link.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (needs flin[metrics]).")
@click.option("--detach", is_flag=True,
              help="Run in the background, logging to DATA/flin.log; `flin stop` stops it.")
def start(data: str, shards: int, bind: str, sync: bool, read_cache_mb: float,
          shard_timeout: float, shard_queue: int, write_buffer_mb: float,
          block_cache_mb: float, compression: bool, shard_depth: int, log_level: str,
          insecure: bool, curve_secret: str | None, authorized_keys: str | None,
          backend_keys: str | None, metrics_port: int | None, detach: bool) -> None:
    """Run a cluster until SIGINT/SIGTERM (in the foreground unless --detach)."""
    from .cluster import StartError, Supervisor, setup_logging
    from .security import check_bind
    if bind.startswith("ipc://") and not bind.startswith("ipc:///"):  # survives --detach's chdir
        bind = "ipc://" + os.path.abspath(bind[len("ipc://"):])
    cfg = Config(data=data, shards=shards, bind=bind, sync=sync, read_cache_mb=read_cache_mb,
                 shard_timeout=shard_timeout, shard_queue=shard_queue, shard_depth=shard_depth,
                 write_buffer_mb=write_buffer_mb, block_cache_mb=block_cache_mb,
                 compression=compression,
                 log_level=log_level, insecure=insecure, curve_secret=_abs(curve_secret),
                 authorized_keys=_abs(authorized_keys), backend_keys=_abs(backend_keys))
    cfg.metrics_port = metrics_port
    if metrics_port and curve_secret:
        raise click.UsageError("--metrics-port does not work with --curve-secret yet "
                               "(the exporter has no client key)")
    setup_logging(log_level)  # before the check, so that its warnings are logged in full
    try:
        check_bind(cfg)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc))
    notify = None
    if detach:  # from here on, stderr (and so the log) is DATA/flin.log
        from .daemon import detach as daemonize
        notify = daemonize(cfg)
    try:
        supervisor = Supervisor(cfg)
        supervisor.on_ready = notify
        sys.exit(supervisor.run())
    except StartError as exc:
        click.echo("flin: %s" % exc, err=True)
        if notify is not None:
            notify("error: %s" % exc)
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--server", default="server", show_default=True,
              help="Name of the server's key pair (made unless FOLDER has it).")
@click.option("--client", "clients", multiple=True,
              help="Name of a client key pair to make (repeatable) [default: client].")
def keygen(folder: str, server: str, clients: tuple[str, ...]) -> None:
    """Make CURVE key pairs in FOLDER (owner-only) for `flin start --curve-secret`."""
    from .security import AUTHORIZED, keygen as make_keys
    clients = clients or ("client",)
    try:
        for path in make_keys(folder, server, clients):
            click.echo("wrote %s" % path)
    except (ValueError, OSError) as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    auth = "%s/%s" % (folder, AUTHORIZED)
    click.echo("server:  flin start --curve-secret %s/%s.key_secret --authorized-keys %s"
               % (folder, server, auth))
    click.echo("clients: flin ... --server-key %s/%s.key --client-key %s/%s.key_secret"
               % (folder, server, folder, clients[0]))
    click.echo("Give each client only its own .key_secret and the server's .key; "
               "the server needs its .key_secret and %s/." % auth)


@main.command()
@data_opt
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for it to stop.")
def stop(data: str, wait: float) -> None:
    """Stop the cluster serving DATA (SIGTERM to its supervisor, then wait)."""
    from .cluster import stop as stop_cluster
    if not stop_cluster(Config(data=data), wait):
        click.echo("flin: no cluster is running on %s" % data, err=True)
        sys.exit(EXIT_UNREACHABLE)
    click.echo("flin: stopped")


@main.command()
@data_opt
@click.option("--shard", type=click.IntRange(0), help="Repair only this shard (default: all).")
def repair(data: str, shard: int | None) -> None:
    """Run LevelDB's repair on the shards of a STOPPED cluster."""
    from .maintenance import RepairError, repair as repair_shards
    try:
        for line in repair_shards(Config(data=data), shard):
            click.echo(line)
    except RepairError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)


@main.command()
@endpoint_opt
@timeout_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(endpoint: str, timeout: float, as_json: bool) -> None:
    """The router and every shard: id, pid, alive."""
    st = _run(endpoint, timeout, lambda c: c.status())
    if as_json:
        click.echo(json.dumps(st))
        return
    alive = sum(1 for s in st["shards"] if s["alive"])
    click.echo("router  pid %d  up %.0fs  %d/%d shards alive"
               % (st["router"]["pid"], st["router"]["uptime"], alive, len(st["shards"])))
    for s in st["shards"]:
        deaths = "  (%d deaths in a row)" % s["deaths"] if s.get("deaths") else ""
        click.echo("shard %3d  pid %-8s %s%s" % (s["id"], s["pid"] or "-",
                                               "alive" if s["alive"] else "DOWN: %s" % s["error"],
                                               deaths))
    if alive < len(st["shards"]):
        sys.exit(EXIT_SERVER)


@main.command()
@click.option("--shards", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Shards of the cluster the bench starts (ignored with --endpoint).")
@click.option("--endpoint", "-e", default=None,
              help="Bench a cluster that is already up instead of starting one.")
@click.option("--workers", default=64, show_default=True, type=click.IntRange(1),
              help="Concurrent workers (over all load processes).")
@click.option("--value-size", default=1024, show_default=True, type=click.IntRange(1),
              help="Bytes per value.")
@click.option("--duration", default=3.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per phase.")
@click.option("--keys", default=1_000_000, show_default=True, type=click.IntRange(1),
              help="Key space.")
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1),
              help="Requests in flight per worker.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 100_000),
              help="Keys per MSET/MGET request (1 = single-key ops).")
@click.option("--workload", "workloads", multiple=True,
              type=click.Choice(["write", "read", "mixed", "zipf", "scan", "incr"]),
              help="Phase to run (repeatable; default: write, then read). Reading "
                   "workloads get a write phase first.")
@click.option("--processes", type=click.IntRange(1),
              help="Load-generator processes [default: cores, at most 4].")
@click.option("--baseline", "baselines", multiple=True, type=click.Choice(["engine", "redis"]),
              help="Also run the workload on plyvel alone / a local redis-server (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write every figure, the configuration and the machine as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw latency distribution and throughput over time (PNG, needs flin[perf]).")
@click.option("--seed", default=1, show_default=True, help="Seed of the key choices.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def bench(**options: Any) -> None:
    """Measure throughput and per-request latency (the harness is in perf/)."""
    try:
        from perf.bench import BenchConfig, BenchError, run
    except ImportError as exc:
        click.echo("flin: bench needs the perf harness and its extras "
                   "(pip install -e '.[perf]'): %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    options["workloads"] = tuple(options["workloads"]) or ("write", "read")
    options["baselines"] = tuple(options["baselines"])
    if options["processes"] is None:
        del options["processes"]
    try:
        cfg = BenchConfig(**options)
        cfg.check()
    except ValueError as exc:
        raise click.UsageError(str(exc))
    try:
        run(cfg)
    except BenchError as exc:
        click.echo("flin: bench failed: %s" % exc, err=True)
        sys.exit(EXIT_SERVER)


from . import datacli, opscli  # noqa: E402,F401  (register their commands on main)
