"""The Python client: one DEALER socket, many requests in flight, typed errors.

    with flin.Client("tcp://127.0.0.1:7700") as db:
        db.set("user:1", b"ada")
        db.get("user:1")                     # b"ada"
        with db.pipeline() as p:             # one frame, one round trip
            p.incr("hits"); p.get("user:1")
        p.results                            # [1, b"ada"]

A Client is not thread-safe (a ZeroMQ socket is not): use one per thread or
process. Keys and values are bytes; ``str`` is encoded as UTF-8.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import zmq

from . import errors, protocol, security
from .config import DEFAULT_ENDPOINT
from .protocol import (
    CAS, DEL, EXISTS, EXPIRE, GET, INCR, MGET, MSET, NX, PERSIST, PING, SCAN, SET,
    STATUS, TTL, XX, ErrorReply,
    COMPACT, SHARD, SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, STATS,
)

Key = bytes | str
_IDEMPOTENT = {PING, GET, EXISTS, TTL, MGET, SCAN, STATUS, SET, MSET, DEL, EXPIRE, PERSIST,
               STATS, COMPACT}


def _b(x: Any, what: str = "key") -> bytes:
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(x).__name__))


def _ms(seconds: float) -> int:
    ms = int(round(seconds * 1000))
    return 1 if ms == 0 and seconds > 0 else ms


def _same(x: Any) -> Any:
    return x


def _none(x: Any) -> None:
    return None


def _seconds(ms: int) -> float:
    return float(ms) if ms < 0 else ms / 1000.0


def _scan_page(values: bool) -> Callable[[Any], tuple]:
    def convert(r: Any) -> tuple:
        items, cursor = r
        return ([tuple(kv) for kv in items] if values else items), cursor
    return convert


class Commands:
    """The command methods shared by ``Client`` (runs each at once) and
    ``Pipeline`` (queues them). Each builds the wire command and says how to
    turn the raw result into the return value."""

    def _cmd(self, cmd: list, convert: Callable[[Any], Any] = _same) -> Any:
        raise NotImplementedError

    def ping(self) -> bool:
        """True if the router answers. Raises ``Timeout`` if it does not."""
        return self._cmd([PING])

    def get(self, key: Key) -> bytes | None:
        """The value of ``key``, or None if it does not exist (an empty value is ``b""``).
        Raises ``ShardUnavailable`` if the key's shard is down."""
        return self._cmd([GET, _b(key)])

    def set(self, key: Key, value: bytes | str, ttl: float | None = None,
            nx: bool = False, xx: bool = False) -> bool | None:
        """Store ``value`` under ``key``.

        ttl: seconds until the key expires (None: never).
        nx / xx: write only if the key is absent / present.
        Returns None, or with ``nx``/``xx`` whether it wrote.
        Raises ``TooLarge`` past 64 KiB keys or 64 MiB values, ``ValueError``
        for ``nx`` with ``xx`` or a ttl <= 0.
        """
        if nx and xx:
            raise ValueError("nx and xx exclude each other")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        flags = NX if nx else XX if xx else 0
        return self._cmd([SET, _b(key), _b(value, "value"),
                          None if ttl is None else _ms(ttl), flags])

    def delete(self, *keys: Key) -> int:
        """Delete ``keys``; returns how many existed."""
        return self._cmd([DEL, [_b(k) for k in keys]])

    def exists(self, key: Key) -> bool:
        """Whether ``key`` exists (and has not expired)."""
        return self._cmd([EXISTS, _b(key)])

    def mget(self, keys: Iterable[Key]) -> list[bytes | None]:
        """Values of ``keys`` in their order, None for each missing key.
        Atomic per shard, not across shards."""
        return self._cmd([MGET, [_b(k) for k in keys]])

    def mset(self, mapping: Mapping[Key, bytes | str] | Iterable[tuple[Key, bytes | str]],
             ttl: float | None = None) -> None:
        """Store every pair; ``ttl`` (seconds) applies to each key. The keys of
        one shard are written in one atomic batch; across shards, a failure
        (raised as the first shard's error) may leave some shards written."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        flat: list[bytes] = []
        for k, v in pairs:
            flat.append(_b(k))
            flat.append(_b(v, "value"))
        return self._cmd([MSET, flat, None if ttl is None else _ms(ttl)], _none)

    def incr(self, key: Key, by: int = 1) -> int:
        """Add ``by`` to the signed 64-bit integer at ``key`` (missing counts as 0)
        and return the new value. Raises ``NotAnInteger`` if the value is not a
        decimal integer (it is left as it was), ``Overflow`` past 64 bits.
        Safe to retry: the request carries an id the shard remembers."""
        return self._cmd([INCR, _b(key), int(by), os.urandom(12)])

    def decr(self, key: Key, by: int = 1) -> int:
        """``incr(key, -by)``."""
        return self.incr(key, -int(by))

    def expire(self, key: Key, seconds: float) -> bool:
        """Set ``key`` to expire in ``seconds`` (<= 0 deletes it now).
        Returns whether the key exists."""
        return self._cmd([EXPIRE, _b(key), _ms(seconds)])

    def persist(self, key: Key) -> bool:
        """Remove ``key``'s expiry; returns whether it had one."""
        return self._cmd([PERSIST, _b(key)])

    def ttl(self, key: Key) -> float:
        """Seconds left before ``key`` expires; -1.0 if it never does, -2.0 if
        it does not exist (Redis's answers)."""
        return self._cmd([TTL, _b(key)], _seconds)

    def cas(self, key: Key, expected: bytes | str | None, new: bytes | str) -> bool:
        """Compare-and-set: store ``new`` only if the value is ``expected``
        (None: only if the key is absent). Returns whether it swapped.
        Atomic on the key's shard; safe to retry (it carries a request id)."""
        exp = None if expected is None else _b(expected, "value")
        return self._cmd([CAS, _b(key), exp, _b(new, "value"), os.urandom(12)])

    def scan(self, prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
             values: bool = False) -> tuple[list, bytes | None]:
        """One page of keys starting with ``prefix``, in ascending byte order,
        after ``start_after``. Returns ``(items, cursor)``: items are keys, or
        ``(key, value)`` pairs with ``values=True``; pass ``cursor`` as the next
        ``start_after``; it is None when the range is done. A page may hold
        fewer than ``limit`` items (at most 10,000) before the end."""
        sa = None if start_after is None else _b(start_after)
        return self._cmd([SCAN, _b(prefix), sa, int(limit), bool(values)], _scan_page(values))

    def status(self) -> dict:
        """``{"router": {"pid", "uptime"}, "shards": [{"id", "pid", "alive", "error"}]}``,
        asking every shard."""
        return self._cmd([STATUS])

    def stats(self) -> dict:
        """Counters of the router and of every shard (see ``flin stats``):
        ``{"router": {"requests", "in_flight", "errors": {name: n}, "queues",
        "latency": {kind: {"count", "p50_ms", ..., "buckets"}}, "uptime_s", ...},
        "shards": [{"id", "alive", "ops": {op: n}, "errors", "keys",
        "keys_estimated", "disk_bytes", "cache", "compaction", "leveldb_stats"}]}``.
        A shard that does not answer appears with ``alive`` False and ``error``."""
        return self._cmd([STATS])

    def compact(self, shard: int | None = None) -> list[bool] | bool:
        """Start a LevelDB compaction on ``shard`` (None: on every shard) and
        return at once: True where one started, False where one was running.
        Progress and outcome show in ``stats()`` under ``compaction``.
        Raises ``BadRequest`` for a shard that does not exist."""
        if shard is None:
            return self._cmd([COMPACT])
        return self._cmd([SHARD, int(shard), [COMPACT]])

    def shard_stats(self, shard: int) -> dict:
        """The counters of one shard (one entry of ``stats()["shards"]``, without id)."""
        return self._cmd([SHARD, int(shard), [STATS]])

    def snapshot_open(self, shard: int) -> int:
        """Take a LevelDB snapshot on ``shard``; returns its id. The shard
        releases it after 60 s without a ``snapshot_read`` (see ``flin backup``)."""
        return self._cmd([SHARD, int(shard), [SNAPSHOT_OPEN]])

    def snapshot_read(self, shard: int, snapshot: int, after: bytes | None = None,
                      limit: int = 10_000, max_bytes: int = 4 << 20) -> tuple[list, bytes | None]:
        """One page of the snapshot's raw LevelDB entries (every prefix, in
        order) after raw key ``after``: ``([(raw_key, raw_value), ...], cursor)``,
        at most ``limit`` entries and about ``max_bytes``; ``cursor`` is None at
        the end. Raises ``BadRequest`` if the snapshot expired."""
        def pairs(r: Any) -> tuple:
            it = iter(r[0])
            return list(zip(it, it)), r[1]
        return self._cmd([SHARD, int(shard), [SNAPSHOT_READ, int(snapshot), after, int(limit),
                                               int(max_bytes)]], pairs)

    def snapshot_close(self, shard: int, snapshot: int) -> bool:
        """Release a snapshot; returns whether it was still open."""
        return self._cmd([SHARD, int(shard), [SNAPSHOT_CLOSE, int(snapshot)]])


class Client(Commands):
    """A connection to a Flin router.

    endpoint: ``tcp://host:port`` or ``ipc://path``.
    timeout: seconds a call may take in all, retries included; then ``Timeout``.
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
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0,
                 retries: int = 3, server_key: Any = None, client_keys: Any = None) -> None:
        self.endpoint = endpoint
        self._curve = security.client_keys(server_key, client_keys)
        self.timeout = timeout
        self.retries = retries
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._rid = 0
        self._early: dict[int, Any] = {}   # replies that came while awaiting another

    # -- transport ---------------------------------------------------------------
    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IMMEDIATE, 1)   # queue nothing for a router that is not there
            s.setsockopt(zmq.MAXMSGSIZE, 2 * protocol.MAX_MESSAGE)
            security.secure_client(s, self._curve)
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def _reset(self) -> None:
        """Drop the socket and whatever it still queued (the Lazy Pirate way),
        so a late or stale request is never delivered to a restarted router."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._early.clear()

    def submit(self, commands: list, timeout: float | None = None) -> int:
        """Send raw wire commands as one request without waiting; returns its id.
        Raises ``ConnectionFailed`` if the router cannot be reached in time."""
        sock = self._socket()
        self._rid += 1
        frame = protocol.encode(self._rid, commands)
        if len(frame) > protocol.MAX_MESSAGE:  # the router's libzmq would drop us unanswered
            raise errors.TooLarge("request of %d bytes exceeds the %d-byte message limit "
                                  "(values are limited to %d bytes)"
                                  % (len(frame), protocol.MAX_MESSAGE, protocol.MAX_VALUE))
        wait_ms = int(1000 * (self.timeout if timeout is None else timeout))
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            if not sock.poll(wait_ms, zmq.POLLOUT):
                self._reset()
                raise errors.ConnectionFailed("cannot reach %s%s" % (
                    self.endpoint, " (or the CURVE handshake failed: check the keys)" if self._curve else "")) from None
            sock.send(frame, zmq.NOBLOCK)
        return self._rid

    def receive(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next reply ``(request_id, results)`` of any request in flight.
        Raises ``Timeout`` after ``timeout`` seconds (default: the client's)."""
        sock = self._socket()
        if not sock.poll(int(1000 * (self.timeout if timeout is None else timeout))):
            raise errors.Timeout("no reply from %s within %.1fs" % (self.endpoint, timeout or self.timeout))
        try:
            return protocol.decode(sock.recv())
        except Exception as exc:
            raise errors.ProtocolError("undecodable reply: %s" % exc) from None

    def collect(self, rid: int, timeout: float | None = None) -> list:
        """Wait for the results of request ``rid`` (see ``submit``)."""
        if rid in self._early:
            return self._early.pop(rid)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._reset()
                raise errors.Timeout("no reply from %s within %.1fs" % (self.endpoint, self.timeout))
            try:
                got, results = self.receive(left)
            except errors.Timeout:
                self._reset()
                raise
            if got == rid:
                return results
            if got == 0 and type(results) is ErrorReply:  # the router could not read our id
                return results  # type: ignore[return-value]
            if got > self._rid - 10_000:
                self._early[got] = results

    def execute(self, commands: list, timeout: float | None = None) -> list:
        """Send raw wire commands as one request and return the raw results
        (``ErrorReply`` in place of failed entries)."""
        results = self.collect(self.submit(commands, timeout), timeout)
        if type(results) is ErrorReply:
            return [results] * len(commands)
        return results

    # -- one command ----------------------------------------------------------------
    def _cmd(self, cmd: list, convert: Callable[[Any], Any] = _same) -> Any:
        deadline = time.monotonic() + self.timeout
        # may a request whose outcome is unknown be sent again? (SET NX/XX may not)
        retryable_unknown = (cmd[0] in _IDEMPOTENT and not (cmd[0] == SET and cmd[4])) \
            or cmd[0] in (INCR, CAS)
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                result = self.execute([cmd], max(left, 0.001))[0]
            except errors.Timeout:
                if not retryable_unknown or attempt >= self.retries or deadline - time.monotonic() < 0.05:
                    raise
                attempt += 1
                continue
            if type(result) is not ErrorReply:
                return convert(result)
            err = errors.error_for_code(result.code, result.message)
            if (attempt < self.retries and err.retryable
                    and (retryable_unknown or not isinstance(err, errors.OutcomeUnknown))
                    and deadline - time.monotonic() > 0.05):
                attempt += 1
                time.sleep(min(0.05 * 2 ** attempt, max(0.0, deadline - time.monotonic()) / 2))
                continue
            raise err

    def pipeline(self) -> "Pipeline":
        """A pipeline: queue commands, send them as one frame with ``execute()``."""
        return Pipeline(self)

    def close(self) -> None:
        """Close the socket. The client can be used again (it reconnects)."""
        self._reset()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def scan_iter(self, prefix: Key = b"", values: bool = False, page: int = 1000) -> Iterator:
        """Every key (or ``(key, value)`` pair) with ``prefix``, in order, paged
        ``page`` at a time. A key present for the whole walk is yielded once."""
        cursor = None
        while True:
            items, cursor = self.scan(prefix, cursor, page, values)
            yield from items
            if cursor is None:
                return


class Pipeline(Commands):
    """Commands queued and sent in one request. ``execute()`` returns their
    results in order; a failed command's exception object stands in its place
    (it is not raised). Used as a context manager it executes on exit and
    keeps the list in ``results``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._cmds: list = []
        self._converts: list = []
        self.results: list | None = None

    def _cmd(self, cmd: list, convert: Callable[[Any], Any] = _same) -> "Pipeline":
        self._cmds.append(cmd)
        self._converts.append(convert)
        return self

    def __len__(self) -> int:
        return len(self._cmds)

    def execute(self) -> list:
        """Send every queued command in one request; returns their results.
        Raises ``Timeout`` / ``ConnectionFailed`` if no reply came."""
        cmds, converts = self._cmds, self._converts
        self._cmds, self._converts = [], []
        if not cmds:
            return []
        raw = self.client.execute(cmds)
        out: list = []
        for r, convert in zip(raw, converts):
            if type(r) is ErrorReply:
                out.append(errors.error_for_code(r.code, r.message))
            else:
                out.append(convert(r))
        self.results = out
        return out

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.execute()
