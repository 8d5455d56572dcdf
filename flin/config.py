"""All of a host's server settings in one place; ``flin start`` options map 1:1.

Also the paths every server process agrees on inside the data folder, so
that the supervisor, the router and the workers need not import each other
to find them. Clients never import this module."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .protocol import DEFAULT_ENDPOINT

MAX_SHARDS = 4096                        # the most shards one host runs (`flin start --shards`)
MAX_ROUTERS = 64                         # the most routers one host runs (`flin start --routers`)


def auto_routers(cores: int | None = None) -> int:
    """``--routers auto``: about one router per 4 cores, at least 1. Measured
    on 2 cores, a second router only takes CPU from the shards; on 16 cores
    one router saturates at 3-5 cores used (perf/results)."""
    n = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, min(MAX_ROUTERS, n // 4))


def endpoint_of(bind: str, router: int) -> str:
    """The client endpoint of router ``router`` of a host bound at ``bind``:
    router 0 has ``bind`` itself, router i a TCP port i above it
    (``tcp://HOST:7700`` -> ``tcp://HOST:7701``...) or an ipc path with
    ``.i`` appended (``ipc:///run/flin.sock`` -> ``ipc:///run/flin.sock.1``)."""
    if router == 0:
        return bind
    scheme, _, rest = bind.partition("://")
    if scheme == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("%s: a pool of routers needs a numeric port" % bind)
        if int(port) + router > 65535:
            raise ValueError("%s: router %d would need port %d, past 65535"
                             % (bind, router, int(port) + router))
        return "%s://%s:%d" % (scheme, host, int(port) + router)
    return "%s.%d" % (bind, router)


def resp_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); ``ValueError`` saying why not."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a RESP address is HOST:PORT (e.g. 127.0.0.1:7379), or off; got %r"
                         % text)
    return host, int(port)


@dataclass
class Config:
    data: str = "./data"                 # data folder: shard-NN/ LevelDBs, manifest, run/
    shards: int = 64                     # shard worker processes
    bind: str = DEFAULT_ENDPOINT         # client endpoint of router 0 (the others: ``endpoint_of``)
    routers: int = 1                     # router processes, each linked to every shard
    router_id: int = 0                   # which of them this process is (set per router process)
    sync: bool = False                   # fsync every acknowledged write batch
    read_cache_mb: float = 64.0          # the router's read cache of hot keys, MiB (0 = off)
    shard_timeout: float = 2.0           # s of silence from a shard with batches in flight: stalled
    shard_depth: int = 2                 # batches in flight per shard (the rest coalesce)
    shard_queue: int = 100_000           # ops queued per shard before Overloaded
    max_clients: int = 10_000            # client connections per router (less if RLIMIT_NOFILE is lower)
    write_buffer_mb: float = 1.0         # LevelDB memtable per shard, MiB
    block_cache_mb: float = 1.0          # LevelDB block cache per shard, MiB
    compression: bool = True             # snappy-compress LevelDB blocks
    max_open_files: int = 500            # LevelDB table files kept open per shard (capped by RLIMIT_NOFILE)
    log_level: str = "INFO"
    metrics_port: int | None = None      # TCP port of the Prometheus exporter on 127.0.0.1 (None = off)
    insecure: bool = False               # allow a non-loopback bind without CURVE (or RESP without AUTH and TLS)
    # the Redis protocol (flin.router.resp): None = off
    resp: str | None = None              # HOST:PORT every router listens on (SO_REUSEPORT)
    resp_timeout: float = 0.0            # s a RESP connection may stay idle (0 = forever)
    resp_password_file: str | None = None  # AUTH must give this file's first line
    resp_tls_cert: str | None = None     # TLS on the RESP port: certificate chain (PEM) ...
    resp_tls_key: str | None = None      # ... and its private key
    # CurveZMQ (SECURITY.md; key files from `flin keygen`): None = off
    curve_secret: str | None = None      # router's key pair file (NAME.key_secret): encrypts the client endpoint
    authorized_keys: str | None = None   # folder of client public keys (*.key) the router accepts
    backend_keys: str | None = None      # folder with router/worker key pairs: CURVE on the worker link
                                         # (workers on other hosts: cluster mode)
    # cluster mode (flin.cluster; README "Many hosts"): None = one host, the manifest
    etcd: str | None = None              # etcd URL[,URL...]: the topology lives there
    cluster: str | None = None           # the cluster's name (``/flin/<cluster>/`` in etcd)
    node: str | None = None              # this node's name in it
    advertise: str | None = None         # the host address other nodes reach this node at
    backend_port: int = 7800             # router i takes shard workers' links on advertise:port+i
    lease_ttl: int = 3                   # s: the node's etcd lease (liveness, the write fence, failover)
    repl_port: int = 7900                # a replicated shard s streams to its copies on advertise:port+s
    etcd_user: str | None = None         # etcd user ...
    etcd_password_file: str | None = None  # ... and a file whose first line is its password
    etcd_ca: str | None = None           # CA bundle for https:// etcd URLs
    etcd_cert: str | None = None         # client certificate for etcd (PEM) ...
    etcd_key: str | None = None          # ... and its key

    @property
    def resp_address(self) -> tuple[str, int]:
        """``resp`` as (host, port); ``ValueError`` if it is not HOST:PORT."""
        return resp_address(self.resp or "")

    @property
    def run_dir(self) -> str:
        """Owner-only folder for the worker link and the supervisor's state file."""
        return os.path.join(os.path.abspath(self.data), "run")

    @property
    def endpoint(self) -> str:
        """This router's client endpoint (``router_id``'s)."""
        return endpoint_of(self.bind, self.router_id)

    def endpoints(self) -> list[str]:
        """Every router's client endpoint, router 0's first."""
        return [endpoint_of(self.bind, i) for i in range(self.routers)]

    def backend_of(self, router: int) -> str:
        """Router ``router``'s ZeroMQ endpoint for shard workers: ipc, owner-only,
        or in cluster mode TCP on the advertised address (CURVE with ``backend_keys``)."""
        if self.etcd:
            return "tcp://%s:%d" % (self.advertise, self.backend_port + router)
        return "ipc://" + os.path.join(self.run_dir, "shards.sock" if router == 0
                                       else "shards-%d.sock" % router)

    def repl_endpoint(self, shard: int, advertise: str | None = None,
                      port: int | None = None) -> str:
        """Where shard ``shard``'s copy on a node (this one, or one at
        ``advertise`` with its ``port``) takes its replication link."""
        return "tcp://%s:%d" % (advertise or self.advertise,
                                (port or self.repl_port) + shard)

    @property
    def backend(self) -> str:
        """This router's ZeroMQ endpoint for shard workers."""
        return self.backend_of(self.router_id)

    def link_path_of(self, router: int) -> str:
        """The Unix socket where workers reach router ``router`` (owner-only folder)."""
        return os.path.join(self.run_dir, "shards.link" if router == 0
                            else "shards-%d.link" % router)

    @property
    def link_path(self) -> str:
        """This router's Unix socket for workers."""
        return self.link_path_of(self.router_id)

    @property
    def children_path(self) -> str:
        """What the supervisor knows of its children (deaths, broken shards),
        written by it and read by the router for STATUS."""
        return os.path.join(self.run_dir, "children.json")

    @property
    def reshard_path(self) -> str:
        """A reshard's request and progress (``supervisor.reshard``), while one runs."""
        return os.path.join(self.run_dir, "reshard.json")

    def backends(self) -> list[str]:
        """Every router's endpoint for shard workers, router 0's first."""
        return [self.backend_of(i) for i in range(self.routers)]

    @property
    def zmq_links(self) -> bool:
        """Whether workers link to routers over ZeroMQ (CURVE, or another host)."""
        return bool(self.backend_keys or self.etcd)

    def shard_dir(self, shard: int) -> str:
        """The LevelDB folder of ``shard``."""
        return os.path.join(os.path.abspath(self.data), "shard-%02d" % shard)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
