"""The commands that run a host's cluster: start, stop, status, keygen."""
from __future__ import annotations

import json
import os
import sys

import click

from ..config import MAX_SHARDS, Config, endpoint_of, resp_address
from ..protocol import DEFAULT_ENDPOINT, DEFAULT_RESP
from ..supervisor.datadir import load_manifest
from .common import (
    ETCD_FIELDS, EXIT_SERVER, EXIT_UNREACHABLE, EXIT_USAGE, MiB, Routers, Seconds, abspath,
    data_opt, endpoint_opt, etcd_config, etcd_opts, key_file, run_client, timeout_opt,
)


@click.command()
@data_opt
@click.option("--shards", default=None, envvar="FLIN_SHARDS", type=click.IntRange(1, MAX_SHARDS),
              help="Shard worker processes [default: the data folder's count; 64 for a new "
                   "folder]. `flin reshard` changes it on a running cluster.")
@click.option("--bind", default=DEFAULT_ENDPOINT, show_default=True, envvar="FLIN_BIND",
              help="Client endpoint: tcp://HOST:PORT or ipc://PATH.")
@click.option("--routers", default="auto", show_default=True, envvar="FLIN_ROUTERS", type=Routers(),
              help="Router processes, each linked to every shard: auto is about one per 4 "
                   "cores (at least 1). Router i listens on --bind's port + i "
                   "(ipc: the path + '.i'); clients given one endpoint learn the rest.")
@click.option("--sync", is_flag=True, help="fsync every write batch before acknowledging it.")
@click.option("--read-cache-mb", default=64.0, show_default=True, type=MiB(0),
              help="The router's cache of hot values in MiB (0 = off).")
@click.option("--shard-timeout", default=2.0, show_default=True, type=Seconds(0.1),
              help="Seconds a shard with batches in flight may stay silent before they fail "
                   "as OutcomeUnknown (a shard sending a big reply is not silent).")
@click.option("--shard-queue", default=100_000, show_default=True, type=click.IntRange(1),
              help="Ops queued for one shard before new ones get Overloaded.")
@click.option("--max-clients", default=10_000, show_default=True, envvar="FLIN_MAX_CLIENTS",
              type=click.IntRange(1),
              help="Client connections the router admits (fewer if the open-file limit "
                   "is lower); the rest get Overloaded.")
@click.option("--write-buffer-mb", default=1.0, show_default=True, type=MiB(0.1, 4096),
              help="LevelDB memtable per shard, MiB (more: fewer compactions, more memory).")
@click.option("--block-cache-mb", default=1.0, show_default=True, type=MiB(0),
              help="LevelDB block cache per shard, MiB.")
@click.option("--compression/--no-compression", default=True, show_default=True,
              help="Snappy-compress LevelDB blocks.")
@click.option("--shard-depth", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Batches in flight per shard; more ops coalesce meanwhile.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind without authentication.")
@click.option("--curve-secret", type=key_file,
              help="The router's CURVE key pair (server.key_secret): encrypt the client "
                   "endpoint and admit only --authorized-keys.")
@click.option("--authorized-keys", type=click.Path(exists=True, file_okay=False),
              help="Folder of client public keys (*.key) admitted with --curve-secret.")
@click.option("--backend-keys", type=click.Path(exists=True, file_okay=False),
              help="Folder of router/worker key pairs (flin keygen DIR --server router "
                   "--client worker): CURVE on the router-worker link.")
@click.option("--resp", default=DEFAULT_RESP, show_default=True, envvar="FLIN_RESP",
              help="Speak the Redis protocol on HOST:PORT (every router, one port), or 'off'.")
@click.option("--resp-timeout", default=0.0, show_default=True, type=Seconds(0),
              help="Close a RESP connection idle this many seconds (0 = never, as Redis).")
@click.option("--resp-password-file", type=click.Path(exists=True, dir_okay=False),
              help="RESP clients must AUTH with this file's first line.")
@click.option("--resp-tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="TLS on the RESP port: the certificate chain (PEM).")
@click.option("--resp-tls-key", type=click.Path(exists=True, dir_okay=False),
              help="TLS on the RESP port: the private key (PEM).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (needs flin[metrics]).")
@click.option("--detach", is_flag=True,
              help="Run in the background, logging to DATA/flin.log; `flin stop` stops it.")
@etcd_opts
@click.option("--node", envvar="FLIN_NODE",
              help="Cluster mode: this node's name in the cluster (with --etcd, --cluster).")
@click.option("--advertise", envvar="FLIN_ADVERTISE", metavar="HOST",
              help="Cluster mode: the address other nodes reach this one at; --bind defaults "
                   "to tcp://HOST:7700.")
@click.option("--backend-port", default=7800, show_default=True, envvar="FLIN_BACKEND_PORT",
              type=click.IntRange(1, 65535),
              help="Cluster mode: router i takes the shard workers' links on HOST:PORT+i.")
@click.option("--repl-port", default=7900, show_default=True, envvar="FLIN_REPL_PORT",
              type=click.IntRange(1, 65535),
              help="Cluster mode with replicas: shard S's copy here streams on HOST:PORT+S.")
@click.option("--lease-ttl", default=3, show_default=True, envvar="FLIN_LEASE_TTL",
              type=click.IntRange(2, 600),
              help="Cluster mode: seconds of the node's etcd lease (its liveness).")
def start(data: str, shards: int, bind: str, routers: int, sync: bool, read_cache_mb: float,
          shard_timeout: float, shard_queue: int, max_clients: int, write_buffer_mb: float,
          block_cache_mb: float, compression: bool, shard_depth: int, log_level: str,
          insecure: bool, curve_secret: str | None, authorized_keys: str | None,
          backend_keys: str | None, resp: str, resp_timeout: float,
          resp_password_file: str | None, resp_tls_cert: str | None, resp_tls_key: str | None,
          metrics_port: int | None, detach: bool, node: str | None, advertise: str | None,
          backend_port: int, repl_port: int, lease_ttl: int, **etcd_kw: str | None) -> None:
    """Run a cluster until SIGINT/SIGTERM (in the foreground unless --detach).

    With --etcd, --cluster, --node and --advertise: run this machine's node of
    a cluster of many hosts (`flin cluster create` first; README "Many hosts")."""
    from ..supervisor.bindcheck import check_bind
    from ..supervisor.datadir import StartError, running_pid
    from ..supervisor.logs import setup_logging
    from ..supervisor.supervisor import Supervisor
    ctx = click.get_current_context()
    clustered = bool(etcd_kw.get("etcd"))
    if clustered:
        from ..cluster.topology import check_name
        etcd_config(etcd_kw)
        if not node or not advertise:
            raise click.UsageError("cluster mode needs --node NAME and --advertise HOST too")
        try:
            check_name("node", node)
            check_name("cluster", etcd_kw["cluster"] or "")
        except ValueError as exc:
            raise click.UsageError(str(exc))
        if ctx.get_parameter_source("shards") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("in cluster mode the shard count is the cluster's "
                                   "(`flin cluster create --shards N`)")
        if ctx.get_parameter_source("bind") == click.core.ParameterSource.DEFAULT:
            bind = "tcp://%s:7700" % advertise
        if ctx.get_parameter_source("resp") == click.core.ParameterSource.DEFAULT:
            resp = "off"            # several nodes on one machine would share 7379
        shards = 1
    elif node or advertise:
        raise click.UsageError("--node and --advertise are for cluster mode (--etcd, --cluster)")
    if bind.startswith("ipc://") and not bind.startswith("ipc:///"):  # survives --detach's chdir
        bind = "ipc://" + os.path.abspath(bind[len("ipc://"):])
    try:
        endpoint_of(bind, routers - 1)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    if shards is None and not clustered:
        known = load_manifest(Config(data=data)) if os.path.isdir(data) else None
        shards = known["shards"] if known and type(known.get("shards")) is int else 64
    cfg = Config(data=data, shards=shards, bind=bind, routers=routers, sync=sync,
                 read_cache_mb=read_cache_mb,
                 shard_timeout=shard_timeout, shard_queue=shard_queue, shard_depth=shard_depth,
                 max_clients=max_clients,
                 write_buffer_mb=write_buffer_mb, block_cache_mb=block_cache_mb,
                 compression=compression,
                 log_level=log_level, insecure=insecure, curve_secret=abspath(curve_secret),
                 authorized_keys=abspath(authorized_keys), backend_keys=abspath(backend_keys))
    if clustered:
        etcd_cfg = etcd_config(etcd_kw)
        for k in ETCD_FIELDS:
            setattr(cfg, k, getattr(etcd_cfg, k))
        cfg.node, cfg.advertise, cfg.backend_port = node, advertise, backend_port
        cfg.lease_ttl, cfg.repl_port = lease_ttl, repl_port
    cfg.metrics_port = metrics_port
    if resp.lower() != "off":
        try:
            resp_address(resp)
        except ValueError as exc:
            raise click.UsageError(str(exc))
        cfg.resp = resp
    if (resp_password_file or resp_tls_cert or resp_tls_key) and cfg.resp is None:
        raise click.UsageError("--resp-password-file and --resp-tls-* need --resp HOST:PORT")
    cfg.resp_timeout = resp_timeout
    cfg.resp_password_file = abspath(resp_password_file)
    cfg.resp_tls_cert, cfg.resp_tls_key = abspath(resp_tls_cert), abspath(resp_tls_key)
    if metrics_port and curve_secret:
        raise click.UsageError("--metrics-port does not work with --curve-secret yet "
                               "(the exporter has no client key)")
    setup_logging(log_level)  # before the check, so that its warnings are logged in full
    owner = running_pid(cfg)  # the clearer message first; the supervisor's lock decides
    if owner is not None:
        click.echo("flin: a Flin supervisor (pid %d) already serves %s" % (owner, data), err=True)
        sys.exit(EXIT_USAGE)
    try:
        check_bind(cfg)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc))
    notify = None
    if detach:  # from here on, stderr (and so the log) is DATA/flin.log
        from ..supervisor.daemon import detach as daemonize
        notify = daemonize(cfg)
    try:
        supervisor: Supervisor
        if clustered:
            from ..supervisor.cluster import ClusterSupervisor
            supervisor = ClusterSupervisor(cfg)
        else:
            supervisor = Supervisor(cfg)
        supervisor.on_ready = notify
        sys.exit(supervisor.run())
    except StartError as exc:
        click.echo("flin: %s" % exc, err=True)
        if notify is not None:
            notify("error: %s" % exc)
        sys.exit(EXIT_USAGE)


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--server", default="server", show_default=True,
              help="Name of the server's key pair (made unless FOLDER has it).")
@click.option("--client", "clients", multiple=True,
              help="Name of a client key pair to make (repeatable) [default: client].")
def keygen(folder: str, server: str, clients: tuple[str, ...]) -> None:
    """Make CURVE key pairs in FOLDER (owner-only) for `flin start --curve-secret`."""
    from ..curve import AUTHORIZED, keygen as make_keys
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


@click.command()
@data_opt
@click.option("--wait", default=30.0, show_default=True, type=Seconds(0),
              help="Seconds to wait for it to stop.")
def stop(data: str, wait: float) -> None:
    """Stop the cluster serving DATA (SIGTERM to its supervisor, then wait).
    Exit 3 if none runs, 4 if it did not stop within --wait."""
    from ..supervisor.datadir import stop as stop_cluster
    try:
        stopped = stop_cluster(Config(data=data), wait)
    except TimeoutError as exc:        # SIGSTOPped or stuck: it stops once it runs again
        click.echo("flin: %s; it may be stopped (SIGSTOP) or stuck: see its log, "
                   "`kill -CONT` or `kill -KILL` it" % exc, err=True)
        sys.exit(EXIT_SERVER)
    except OSError as exc:             # e.g. not ours to signal
        click.echo("flin: cannot signal the supervisor of %s: %s" % (data, exc.strerror), err=True)
        sys.exit(EXIT_SERVER)
    if not stopped:
        click.echo("flin: no cluster is running on %s" % data, err=True)
        sys.exit(EXIT_UNREACHABLE)
    click.echo("flin: stopped")


@click.command()
@endpoint_opt
@timeout_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(endpoint: str, timeout: float, as_json: bool) -> None:
    """Every router and every shard: id, pid, alive."""
    st = run_client(endpoint, timeout, lambda c: c.status())
    if as_json:
        click.echo(json.dumps(st))
        return
    alive = sum(1 for s in st["shards"] if s["alive"])
    routers = st.get("routers") or [st["router"]]
    up = sum(1 for r in routers if r.get("alive", True))
    click.echo("router %s  pid %d  up %.0fs  %d/%d shards alive  %d/%d routers alive"
               % (st["router"].get("id", 0), st["router"]["pid"], st["router"]["uptime"],
                  alive, len(st["shards"]), up, len(routers)))
    if st.get("resp"):
        click.echo("redis protocol on %s (redis-cli -h %s -p %s)"
                   % ((st["resp"],) + tuple(st["resp"].rsplit(":", 1))))
    cl = st.get("cluster")
    if cl:
        etcd = cl.get("etcd") or {}
        down = [n for n, v in (cl.get("nodes") or {}).items() if not v.get("alive")]
        click.echo("node %s of cluster %s, topology epoch %s; etcd %s%s"
                   % (cl.get("node"), cl.get("name"), cl.get("epoch"),
                      "reached" if etcd.get("ok") else "NOT reached: %s" % etcd.get("error"),
                      "; nodes down: %s" % ", ".join(down) if down else ""))
    r = st.get("reshard")
    click.echo("epoch %s%s" % (st.get("epoch", 1), "" if not r else
               "; resharding %s -> %s shards: %s, %d keys (%.1f MB) moved, %.1f MB/s"
               % (r.get("from"), r.get("to"), r.get("state"), r.get("keys", 0),
                  r.get("bytes", 0) / 1e6, r.get("rate_mb_s", 0.0))))
    for r in routers:
        deaths = "  (%d deaths in a row)" % r["deaths"] if r.get("deaths") else ""
        click.echo("router %2d  pid %-8s %s  %s%s" % (r.get("id", 0), r.get("pid") or "-",
                                                    r.get("endpoint", "?"),
                                                    "alive" if r.get("alive", True) else "DOWN",
                                                    deaths))
    for s in st["shards"]:
        deaths = "  (%d deaths in a row)" % s["deaths"] if s.get("deaths") else ""
        click.echo("shard %3d  pid %-8s %s%s" % (s["id"], s["pid"] or "-",
                                               "alive" if s["alive"] else "DOWN: %s" % s["error"],
                                               deaths))
    if alive < len(st["shards"]) or up < len(routers):
        sys.exit(EXIT_SERVER)


COMMANDS = [start, stop, status, keygen]
