"""The Python client: a DEALER socket per thread, many requests in flight, typed errors.

    with flin.Client("tcp://127.0.0.1:7700") as db:
        db.set("user:1", b"ada")
        db.get("user:1")                     # b"ada"
        with db.pipeline() as p:             # one frame, one round trip
            p.incr("hits"); p.get("user:1")
        p.results                            # [1, b"ada"]

A Client is thread-safe: threads may share one, each calling over its own
DEALER socket, opened at its first call (``transport`` says why and what it
costs). A ``Pipeline`` belongs to the thread that fills and executes it, and
``submit``/``receive``/``collect`` see the calling thread's requests only.
Keys and values are bytes; ``str`` is encoded as UTF-8.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Iterator, Mapping, TypeVar

from .. import curve, errors
from ..protocol import DEFAULT_ENDPOINT, ErrorReply, retry_safe
from . import commands as c
from . import retry
from .commands import Call, Key, Value
from .pipeline import Pipeline
from .pool import Pool
from .transport import Threads

T = TypeVar("T")

MAX_TIMEOUT = 2_000_000.0    # s (23 days): libzmq's poll takes its ms as a C int


def check_timeout(timeout: Any) -> float:
    """``timeout`` if it is a number of seconds in (0, ``MAX_TIMEOUT``], else
    ``InvalidArgument`` (shared with the asyncio client)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise errors.InvalidArgument("timeout must be a number of seconds in (0, %d], not %r"
                                     % (MAX_TIMEOUT, timeout))
    return timeout


class Settings:
    """What both clients are given and check the same way (the sync
    ``Client`` and ``flin.asyncio.Client``: see ``Client`` for each argument)."""

    def __init__(self, endpoint: str, timeout: float, retries: int, server_key: Any,
                 client_keys: Any, discover: bool, read_from: str = "primary") -> None:
        if read_from not in ("primary", "replica"):
            raise errors.InvalidArgument("read_from must be 'primary' or 'replica', not %r"
                                         % (read_from,))
        self.read_from = read_from
        self.endpoint = endpoint
        self._pool = Pool(endpoint, discover)
        self._curve = curve.client_keys(server_key, client_keys)
        self.timeout: float = check_timeout(timeout)
        self.retries = retries


class Client(Settings):
    """A connection to a Flin router.

    endpoint: ``tcp://host:port`` or ``ipc://path``; the first call raises
    ``InvalidArgument`` if ZeroMQ cannot use it.
    timeout: seconds a call may take in all, retries included; then ``Timeout``.
    A number in (0, ``MAX_TIMEOUT``], else ``InvalidArgument`` here.
    retries: extra attempts for an idempotent call after ``ShardUnavailable``,
    ``Overloaded``, ``OutcomeUnknown`` or ``Timeout`` (INCR and CAS are
    retried with the same request id, so they apply once).
    server_key: the router's CURVE public key, a key file (``server.key``)
    or its 40 z85 characters; with it the traffic is encrypted and the
    router authenticated. Needs ``client_keys``.
    client_keys: this client's CURVE key pair, a ``.key_secret`` file or a
    ``(public, secret)`` z85 pair; the router must list its public key. A
    router that refuses the key never answers: calls raise
    ``ConnectionFailed`` or ``Timeout``. Raises ``ValueError``/``OSError``
    for a key that does not load.
    discover: learn the host's other routers (``flin start --routers``) from
    the first answer and spread requests over all of them (``transport.Pool``);
    False: only ever talk to ``endpoint``.
    read_from: ``"primary"`` (linearizable reads), or ``"replica"``: GET, MGET,
    EXISTS and TTL go to any copy of the key's shard (README "Replicas"),
    spreading the reads, and may be stale (by the copy's lag); pipelines and
    writes always go to the primary. ``InvalidArgument`` for anything else.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0,
                 retries: int = 3, server_key: Any = None, client_keys: Any = None,
                 discover: bool = True, read_from: str = "primary") -> None:
        super().__init__(endpoint, timeout, retries, server_key, client_keys, discover,
                         read_from)
        self._threads = Threads(self)
        self._local = self._threads.local   # ``_local.conn``: this thread's socket

    # -- transport (the calling thread's socket: see ``transport``) -------------------
    def _reset(self) -> None:
        """Drop the calling thread's socket and whatever it still queued."""
        self._local.conn.reset()

    def submit(self, commands: list[Any], timeout: float | None = None) -> int:
        """Send raw wire commands as one request without waiting; returns its id
        (an id of the calling thread's socket: collect it in the same thread).
        Raises ``ConnectionFailed`` if the router cannot be reached in time,
        ``TooLarge`` past the message limit."""
        return self.submit_many([commands], timeout)[0]

    def submit_many(self, requests: list[list[Any]], timeout: float | None = None) -> list[int]:
        """Send several requests (each a list of raw wire commands) in ONE
        frame without waiting; each is answered on its own. Returns their ids.
        Raises ``ConnectionFailed`` or ``TooLarge`` as ``submit``."""
        return self._local.conn.submit_many(requests, timeout)

    def receive(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next reply ``(request_id, results)`` of any request this thread has in flight.
        Raises ``Timeout`` after ``timeout`` seconds (default: the client's)."""
        return self._local.conn.receive(timeout)

    def receive_all(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Every reply that has arrived, waiting up to ``timeout`` seconds for
        the first; raises ``Timeout`` if none came."""
        return self._local.conn.receive_all(timeout)

    def collect(self, rid: int, timeout: float | None = None) -> Any:
        """Wait for the results of request ``rid`` (see ``submit``): their list,
        or one ``ErrorReply`` if the router could not read the request.
        Raises ``Timeout`` after ``timeout`` seconds (default: the client's)."""
        return self._local.conn.collect(rid, timeout)

    def execute(self, commands: list[Any], timeout: float | None = None) -> list[Any]:
        """Send raw wire commands as one request and return the raw results
        (``ErrorReply`` in place of failed entries)."""
        return self._local.conn.execute(commands, timeout)

    # -- one command -------------------------------------------------------------------
    def _run(self, call: Call[T]) -> T:
        """Send one command, resending it as ``retry`` allows, within ``timeout``."""
        cmd = c.from_replica(call.cmd) if self.read_from == "replica" else call.cmd
        execute = self._local.conn.execute
        attempts = retry.Attempts(cmd, self.retries, self.timeout)
        resend = retry_safe(cmd)
        while True:
            try:
                result = execute([cmd], attempts.left(), resend)[0]
            except errors.Timeout as exc:
                attempts.timed_out(exc)
                continue
            if type(result) is not ErrorReply:
                return call.convert(result)
            time.sleep(attempts.refused(result))

    def pipeline(self) -> Pipeline:
        """A pipeline: queue commands, send them as one frame with ``execute()``."""
        return Pipeline(self)

    def close(self) -> None:
        """Close every thread's socket; call it once no other thread is in a
        call on this client. The client can be used again (it reconnects)."""
        self._threads.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- data ----------------------------------------------------------------------------
    def ping(self) -> bool:
        """True if the router answers. Raises ``Timeout`` if it does not."""
        return self._run(c.ping())

    def get(self, key: Key) -> bytes | None:
        """The value of ``key``, or None if it does not exist (an empty value is ``b""``).
        Raises ``ShardUnavailable`` if the key's shard is down and the router's
        read cache does not hold the key (a cached value is never stale)."""
        return self._run(c.get(key))

    def set(self, key: Key, value: Value, ttl: float | None = None,
            nx: bool = False, xx: bool = False) -> bool | None:
        """Store ``value`` under ``key``.

        ttl: seconds until the key expires (None: never).
        nx / xx: write only if the key is absent / present.
        Returns None, or with ``nx``/``xx`` whether it wrote.
        Raises ``TooLarge`` past 64 KiB keys or 64 MiB values, and before
        sending, ``InvalidArgument`` (a ``ValueError``) for ``nx`` with ``xx``
        or a ttl that is not a finite number in (0, 100 years].
        """
        return self._run(c.set_(key, value, ttl, nx, xx))

    def delete(self, *keys: Key) -> int:
        """Delete ``keys``; returns how many existed."""
        return self._run(c.delete(keys))

    def exists(self, key: Key) -> bool:
        """Whether ``key`` exists (and has not expired)."""
        return self._run(c.exists(key))

    def mget(self, keys: Iterable[Key]) -> list[bytes | None]:
        """Values of ``keys`` in their order, None for each missing key.
        Atomic per shard, not across shards."""
        return self._run(c.mget(keys))

    def mset(self, mapping: Mapping[Key, Value] | Iterable[tuple[Key, Value]],
             ttl: float | None = None) -> None:
        """Store every pair; ``ttl`` (seconds) applies to each key. The keys of
        one shard are written in one atomic batch; across shards, a failure
        (raised as the first shard's error) may leave some shards written.
        Raises ``InvalidArgument`` as ``set`` for the ttl, before sending."""
        return self._run(c.mset(mapping, ttl))

    def incr(self, key: Key, by: int = 1) -> int:
        """Add ``by`` to the signed 64-bit integer at ``key`` (missing counts as 0)
        and return the new value. Raises ``NotAnInteger`` if the value is not a
        decimal integer (it is left as it was), ``Overflow`` past 64 bits, and
        before sending, ``InvalidArgument`` if ``by`` is not an integer (a float
        is refused, not truncated) within the signed 64-bit range.
        Safe to retry: the request carries an id the shard remembers."""
        return self._run(c.incr(key, by))

    def decr(self, key: Key, by: int = 1) -> int:
        """``incr(key, -by)``: the new value; the same errors (``InvalidArgument``
        also for ``by`` = -2**63, whose negation does not fit)."""
        return self._run(c.decr(key, by))

    def expire(self, key: Key, seconds: float) -> bool:
        """Set ``key`` to expire in ``seconds`` (<= 0 deletes it now).
        Returns whether the key exists. Raises ``InvalidArgument``, before
        sending, unless ``seconds`` is a finite number of at most 100 years."""
        return self._run(c.expire(key, seconds))

    def persist(self, key: Key) -> bool:
        """Remove ``key``'s expiry; returns whether it had one."""
        return self._run(c.persist(key))

    def ttl(self, key: Key) -> float:
        """Seconds left before ``key`` expires; -1.0 if it never does, -2.0 if
        it does not exist (Redis's answers)."""
        return self._run(c.ttl(key))

    def cas(self, key: Key, expected: Value | None, new: Value) -> bool:
        """Compare-and-set: store ``new`` only if the value is ``expected``
        (None: only if the key is absent). Returns whether it swapped.
        Atomic on the key's shard; safe to retry (it carries a request id)."""
        return self._run(c.cas(key, expected, new))

    def scan(self, prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
             values: bool = False) -> tuple[list[Any], bytes | None]:
        """One page of keys starting with ``prefix``, in ascending byte order,
        after ``start_after``. Returns ``(items, cursor)``: items are keys, or
        ``(key, value)`` pairs with ``values=True``; pass ``cursor`` as the next
        ``start_after``; it is None when the range is done. A page may hold
        fewer than ``limit`` items (at most 10,000) before the end.
        Raises ``BadRequest`` for a limit outside 1..10,000."""
        return self._run(c.scan(prefix, start_after, limit, values))

    def scan_iter(self, prefix: Key = b"", values: bool = False, page: int = 1000) -> Iterator[Any]:
        """Every key (or ``(key, value)`` pair) with ``prefix``, in order, paged
        ``page`` at a time. A key present for the whole walk is yielded once.
        Raises what ``scan`` raises, when the page that fails is asked for."""
        cursor = None
        while True:
            items, cursor = self.scan(prefix, cursor, page, values)
            yield from items
            if cursor is None:
                return

    # -- cluster and admin --------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``{"router": {"id", "pid", "endpoint", "uptime", "deaths"}, "routers":
        [{"id", "pid", "endpoint", "alive", "deaths"}], "supervisor": pid,
        "shards": [{"id", "pid", "alive", "error", "deaths"}]}``, asking every
        shard; ``router`` is the router that answered; ``deaths`` counts
        restarts in a row (the supervisor's backoff); ``uptime`` is in seconds
        since that router process started."""
        return self._run(c.status())

    def routers(self) -> list[str]:
        """Every router's client endpoint as the server names them, router 0
        first (one entry for a host with one router)."""
        return self._run(c.routers())

    def node(self) -> dict[str, Any] | None:
        """Cluster mode: the answering router's node's view of its cluster,
        ``{"name", "node", "epoch", "nodes": {name: {"alive", "routers"}},
        "placement": [node per shard], "move", "etcd": {"ok", "error", "since"}}``
        as its agent last learned it from etcd; None from a one-host server."""
        return self._run(c.node())

    def stats(self) -> dict[str, Any]:
        """Counters of the router and of every shard (see ``flin stats``):
        ``{"router": {"requests", "in_flight", "errors": {name: n}, "queues",
        "latency": {kind: {"count", "p50_ms", ..., "buckets"}}, "uptime_s", ...},
        "shards": [{"id", "alive", "ops": {op: n}, "errors", "keys",
        "keys_estimated", "disk_bytes", "cache", "compaction", "leveldb_stats"}]}``.
        A shard that does not answer appears with ``alive`` False and ``error``."""
        return self._run(c.stats())

    def compact(self, shard: int | None = None) -> list[bool] | bool:
        """Start a LevelDB compaction on ``shard`` (None: on every shard) and
        return at once: True where one started, False where one was running.
        Progress and outcome show in ``stats()`` under ``compaction``.
        Raises ``BadRequest`` for a shard that does not exist, and the shard's
        error (e.g. ``ShardUnavailable``) if any targeted shard is down."""
        return self._run(c.compact(shard))

    def shard_stats(self, shard: int) -> dict[str, Any]:
        """The counters of one shard (one entry of ``stats()["shards"]``, without id).
        Raises ``BadRequest`` for a shard that does not exist."""
        return self._run(c.shard_stats(shard))

    def snapshot_open(self, shard: int) -> int:
        """Take a LevelDB snapshot on ``shard``; returns its id. The shard
        releases it after 60 s without a ``snapshot_read`` (see ``flin backup``)."""
        return self._run(c.snapshot_open(shard))

    def snapshot_read(self, shard: int, snapshot: int, after: bytes | None = None,
                      limit: int = 10_000, max_bytes: int = 4 << 20
                      ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """One page of the snapshot's raw LevelDB entries (every prefix, in
        order) after raw key ``after``: ``([(raw_key, raw_value), ...], cursor)``,
        at most ``limit`` entries and about ``max_bytes``; ``cursor`` is None at
        the end. Raises ``BadRequest`` if the snapshot expired."""
        return self._run(c.snapshot_read(shard, snapshot, after, limit, max_bytes))

    def snapshot_close(self, shard: int, snapshot: int) -> bool:
        """Release a snapshot; returns whether it was still open."""
        return self._run(c.snapshot_close(shard, snapshot))
