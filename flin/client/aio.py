"""The asyncio client (``flin.asyncio.Client``): ``flin.Client``'s methods,
arguments, return values, errors and retry rules, awaitable.

    async with flin.asyncio.Client("tcp://127.0.0.1:7700") as db:
        await db.set("user:1", b"ada")
        await db.get("user:1")                 # b"ada"
        async with db.pipeline() as p:         # one frame, one round trip
            p.incr("hits").get("user:1")
        p.results                              # [1, b"ada"]
        async for key in db.scan_iter("user:"):
            ...

One shared core: each method builds its command with ``commands`` and
resends it as ``retry`` says, exactly as ``Client._run`` does; only the
transport differs (``mux``: one socket for every coroutine, requests
multiplexed by id and coalesced per event-loop turn). A client belongs to
one event loop at a time. Each method's docstring is short: the full text
(parameters, return value, errors) is the ``flin.Client`` method's.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterable, Mapping, TypeVar

from .. import errors
from ..protocol import DEFAULT_ENDPOINT, ErrorReply, retry_safe
from . import commands as c
from . import retry
from .client import Settings
from .commands import Call, Key, Value
from .deadlines import Expired
from .mux import Mux
from .pipeline import Queue

T = TypeVar("T")


class Pipeline(Queue):
    """``flin.Pipeline`` for the asyncio client: the same command methods
    (each queues and returns the pipeline); ``await p.execute()`` sends them
    in one request. ``async with db.pipeline() as p`` executes on exit and
    keeps the list in ``p.results``."""

    def __init__(self, client: "Client") -> None:
        super().__init__()
        self.client = client

    async def execute(self) -> list[Any]:
        """Send every queued command in one request; returns their results
        (an exception object in place of each that failed). Raises
        ``Timeout`` / ``ConnectionFailed`` if no reply came."""
        cmds, converts = self._take()
        if not cmds:
            return []
        return self._finish(await self.client.execute(cmds), converts)

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            await self.execute()


class Client(Settings):
    """An asyncio connection to a Flin router; the parameters, and what they
    raise, are ``flin.Client``'s (``InvalidArgument`` for a bad timeout,
    ``ValueError``/``OSError`` for CURVE keys that do not load).

    endpoint: ``tcp://host:port`` or ``ipc://path``. timeout: seconds a call
    may take in all, retries included. retries: extra attempts, as the sync
    client. server_key / client_keys: CURVE, as the sync client. discover:
    spread requests over the host's routers, as the sync client. read_from:
    ``"replica"`` sends GET, MGET, EXISTS and TTL to any copy (maybe stale),
    as the sync client.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0,
                 retries: int = 3, server_key: Any = None, client_keys: Any = None,
                 discover: bool = True, read_from: str = "primary") -> None:
        super().__init__(endpoint, timeout, retries, server_key, client_keys, discover,
                         read_from)
        self._mux = Mux(self)

    async def execute(self, commands: list[Any], timeout: float | None = None) -> list[Any]:
        """Send raw wire commands as one request and return the raw results
        (``ErrorReply`` in place of failed entries). Raises ``Timeout`` after
        ``timeout`` seconds (default: the client's), ``ConnectionFailed`` if
        the router could not be reached, ``TooLarge`` past the message limit."""
        return await self._mux.execute(commands, self.timeout if timeout is None else timeout)

    async def _run(self, call: Call[T]) -> T:
        """``Client._run``, awaited: resend as ``retry`` allows, within
        ``timeout``. ``Mux.execute`` inlined: one coroutine less per call."""
        cmd = c.from_replica(call.cmd) if self.read_from == "replica" else call.cmd
        mux = self._mux
        resend = retry_safe(cmd)
        t0 = time.monotonic()
        attempts = None                  # made at the first failure only (1 us a call)
        while True:
            timeout = self.timeout if attempts is None else attempts.left()
            rid, fut, timer = mux.start([cmd], timeout, resend)
            try:
                results = await fut
            except Expired:
                exc = mux.expired(rid, timeout)
                if not isinstance(exc, errors.Timeout):   # never sent: ConnectionFailed
                    raise exc from None
                attempts = attempts or self._attempts(cmd, t0)
                attempts.timed_out(exc)
                continue
            except errors.Timeout as lost:   # RouterLost: a router went away
                attempts = attempts or self._attempts(cmd, t0)
                attempts.timed_out(lost)
                continue
            finally:
                mux.done(rid, timer)
            result = results if type(results) is ErrorReply else results[0]
            if type(result) is not ErrorReply:
                return call.convert(result)
            attempts = attempts or self._attempts(cmd, t0)
            await asyncio.sleep(attempts.refused(result))

    def _attempts(self, cmd: list[Any], t0: float) -> retry.Attempts:
        """A call's attempts, for one that started at ``t0`` (``time.monotonic``)."""
        return retry.Attempts(cmd, self.retries, self.timeout - (time.monotonic() - t0))

    def pipeline(self) -> Pipeline:
        """A pipeline: queue commands, send them as one frame with ``await p.execute()``."""
        return Pipeline(self)

    async def close(self) -> None:
        """Close the socket; calls still waiting raise ``ConnectionFailed``.
        The client can be used again (it reconnects)."""
        self._mux.reset()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- data ----------------------------------------------------------------------------
    async def ping(self) -> bool:
        """True if the router answers. Raises ``Timeout`` if it does not."""
        return await self._run(c.ping())

    async def get(self, key: Key) -> bytes | None:
        """``Client.get``: the value, or None if ``key`` does not exist.
        Raises ``ShardUnavailable`` if its shard is down (and not cached)."""
        return await self._run(c.get(key))

    async def set(self, key: Key, value: Value, ttl: float | None = None,
                  nx: bool = False, xx: bool = False) -> bool | None:
        """``Client.set``: store ``value`` (``ttl`` seconds; ``nx``/``xx``: only if
        absent/present). Returns None, or with ``nx``/``xx`` whether it wrote.
        Raises ``TooLarge``, and ``InvalidArgument`` before sending."""
        return await self._run(c.set_(key, value, ttl, nx, xx))

    async def delete(self, *keys: Key) -> int:
        """``Client.delete``: delete ``keys``; returns how many existed."""
        return await self._run(c.delete(keys))

    async def exists(self, key: Key) -> bool:
        """``Client.exists``: whether ``key`` exists (and has not expired)."""
        return await self._run(c.exists(key))

    async def mget(self, keys: Iterable[Key]) -> list[bytes | None]:
        """``Client.mget``: values of ``keys`` in order, None for each missing."""
        return await self._run(c.mget(keys))

    async def mset(self, mapping: Mapping[Key, Value] | Iterable[tuple[Key, Value]],
                   ttl: float | None = None) -> None:
        """``Client.mset``: store every pair (atomic per shard). Raises
        ``InvalidArgument`` for the ttl before sending, a shard's error after."""
        return await self._run(c.mset(mapping, ttl))

    async def incr(self, key: Key, by: int = 1) -> int:
        """``Client.incr``: the new value. Raises ``NotAnInteger``, ``Overflow``,
        and ``InvalidArgument`` before sending. Safe to retry (request uid)."""
        return await self._run(c.incr(key, by))

    async def decr(self, key: Key, by: int = 1) -> int:
        """``Client.decr``: ``incr(key, -by)``, with its errors."""
        return await self._run(c.decr(key, by))

    async def expire(self, key: Key, seconds: float) -> bool:
        """``Client.expire``: whether ``key`` exists; ``seconds`` <= 0 deletes it.
        Raises ``InvalidArgument`` before sending for a bad ``seconds``."""
        return await self._run(c.expire(key, seconds))

    async def persist(self, key: Key) -> bool:
        """``Client.persist``: remove the expiry; returns whether it had one."""
        return await self._run(c.persist(key))

    async def ttl(self, key: Key) -> float:
        """``Client.ttl``: seconds left; -1.0 if it never expires, -2.0 if absent."""
        return await self._run(c.ttl(key))

    async def cas(self, key: Key, expected: Value | None, new: Value) -> bool:
        """``Client.cas``: store ``new`` only if the value is ``expected`` (None:
        absent); returns whether it swapped. Safe to retry (request uid)."""
        return await self._run(c.cas(key, expected, new))

    async def scan(self, prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
                   values: bool = False) -> tuple[list[Any], bytes | None]:
        """``Client.scan``: one page ``(items, cursor)``; cursor None at the end.
        Raises ``BadRequest`` for a limit outside 1..10,000."""
        return await self._run(c.scan(prefix, start_after, limit, values))

    async def scan_iter(self, prefix: Key = b"", values: bool = False,
                        page: int = 1000) -> AsyncIterator[Any]:
        """``Client.scan_iter`` for ``async for``: every key (or pair) with
        ``prefix``, in order. Raises what ``scan`` raises, at the failing page."""
        cursor = None
        while True:
            items, cursor = await self.scan(prefix, cursor, page, values)
            for item in items:
                yield item
            if cursor is None:
                return

    # -- cluster and admin --------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """``Client.status``: the router's, the supervisor's and every shard's state."""
        return await self._run(c.status())

    async def routers(self) -> list[str]:
        """``Client.routers``: every router's client endpoint, router 0 first."""
        return await self._run(c.routers())

    async def node(self) -> dict[str, Any] | None:
        """``Client.node``: the answering node's view of its cluster (None on one host)."""
        return await self._run(c.node())

    async def stats(self) -> dict[str, Any]:
        """``Client.stats``: the counters of the router and of every shard."""
        return await self._run(c.stats())

    async def compact(self, shard: int | None = None) -> list[bool] | bool:
        """``Client.compact``: start a compaction (None: every shard); True where
        one started. Raises ``BadRequest`` for an unknown shard."""
        return await self._run(c.compact(shard))

    async def shard_stats(self, shard: int) -> dict[str, Any]:
        """``Client.shard_stats``: one shard's counters; ``BadRequest`` if unknown."""
        return await self._run(c.shard_stats(shard))

    async def snapshot_open(self, shard: int) -> int:
        """``Client.snapshot_open``: a snapshot id (released after 60 s unused)."""
        return await self._run(c.snapshot_open(shard))

    async def snapshot_read(self, shard: int, snapshot: int, after: bytes | None = None,
                            limit: int = 10_000, max_bytes: int = 4 << 20
                            ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """``Client.snapshot_read``: one page of raw entries and the cursor.
        Raises ``BadRequest`` if the snapshot expired."""
        return await self._run(c.snapshot_read(shard, snapshot, after, limit, max_bytes))

    async def snapshot_close(self, shard: int, snapshot: int) -> bool:
        """``Client.snapshot_close``: whether the snapshot was still open."""
        return await self._run(c.snapshot_close(shard, snapshot))
