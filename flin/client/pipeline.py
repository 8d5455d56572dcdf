"""A pipeline: commands queued and sent as one request, one round trip.
(``Queue`` holds the command methods; ``Pipeline`` and ``aio.Pipeline`` send.)

Each command method queues a ``commands.Call`` and returns the pipeline (so
calls chain); ``execute()`` returns their results in order, a failed
command's exception standing in its place. A pipeline is not shared between
threads: each thread makes its own (``Client.pipeline()``), and it is sent
on the socket of the thread that executes it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Protocol, Self

from .. import errors
from ..protocol import ErrorReply
from . import commands as c
from .commands import Call, Key, Value

class Executor(Protocol):
    """What a pipeline sends through: ``Client.execute``."""

    def execute(self, commands: list[Any], timeout: float | None = None) -> list[Any]:
        ...


class Queue:
    """The commands a pipeline queues: each method takes the arguments of the
    ``Client`` method of the same name, queues its ``commands.Call`` and
    returns the pipeline. Shared by ``Pipeline`` and the asyncio client's
    pipeline (``aio.Pipeline``), which differ only in how they send."""

    def __init__(self) -> None:
        self._cmds: list[Any] = []
        self._converts: list[Callable[[Any], Any]] = []
        self.results: list[Any] | None = None

    def _queue(self, call: Call[Any]) -> Self:
        self._cmds.append(call.cmd)
        self._converts.append(call.convert)
        return self

    def __len__(self) -> int:
        return len(self._cmds)

    def _take(self) -> tuple[list[Any], list[Callable[[Any], Any]]]:
        """The queued commands and converters; the queue is empty after."""
        cmds, converts = self._cmds, self._converts
        self._cmds, self._converts = [], []
        return cmds, converts

    def _finish(self, raw: list[Any], converts: list[Callable[[Any], Any]]) -> list[Any]:
        """Raw results -> return values, an exception object for each error."""
        out: list[Any] = []
        for r, convert in zip(raw, converts):
            if type(r) is ErrorReply:
                out.append(errors.error_for_code(r.code, r.message))
            else:
                out.append(convert(r))
        self.results = out
        return out

    # -- the commands: each queues one and returns the pipeline --------------------------
    def ping(self) -> Self:
        """Queue ``Client.ping``."""
        return self._queue(c.ping())

    def get(self, key: Key) -> Self:
        """Queue ``Client.get``."""
        return self._queue(c.get(key))

    def set(self, key: Key, value: Value, ttl: float | None = None,
            nx: bool = False, xx: bool = False) -> Self:
        """Queue ``Client.set``; raises ``InvalidArgument`` at once as it does."""
        return self._queue(c.set_(key, value, ttl, nx, xx))

    def delete(self, *keys: Key) -> Self:
        """Queue ``Client.delete``."""
        return self._queue(c.delete(keys))

    def exists(self, key: Key) -> Self:
        """Queue ``Client.exists``."""
        return self._queue(c.exists(key))

    def mget(self, keys: Iterable[Key]) -> Self:
        """Queue ``Client.mget``."""
        return self._queue(c.mget(keys))

    def mset(self, mapping: Mapping[Key, Value] | Iterable[tuple[Key, Value]],
             ttl: float | None = None) -> Self:
        """Queue ``Client.mset``; raises ``InvalidArgument`` at once as it does."""
        return self._queue(c.mset(mapping, ttl))

    def incr(self, key: Key, by: int = 1) -> Self:
        """Queue ``Client.incr``; raises ``InvalidArgument`` at once as it does."""
        return self._queue(c.incr(key, by))

    def decr(self, key: Key, by: int = 1) -> Self:
        """Queue ``Client.decr``; raises ``InvalidArgument`` at once as it does."""
        return self._queue(c.decr(key, by))

    def expire(self, key: Key, seconds: float) -> Self:
        """Queue ``Client.expire``; raises ``InvalidArgument`` at once as it does."""
        return self._queue(c.expire(key, seconds))

    def persist(self, key: Key) -> Self:
        """Queue ``Client.persist``."""
        return self._queue(c.persist(key))

    def ttl(self, key: Key) -> Self:
        """Queue ``Client.ttl``."""
        return self._queue(c.ttl(key))

    def cas(self, key: Key, expected: Value | None, new: Value) -> Self:
        """Queue ``Client.cas``."""
        return self._queue(c.cas(key, expected, new))

    def scan(self, prefix: Key = b"", start_after: Key | None = None, limit: int = 100,
             values: bool = False) -> Self:
        """Queue ``Client.scan`` (one page)."""
        return self._queue(c.scan(prefix, start_after, limit, values))

    def status(self) -> Self:
        """Queue ``Client.status``."""
        return self._queue(c.status())

    def routers(self) -> Self:
        """Queue ``Client.routers``."""
        return self._queue(c.routers())

    def node(self) -> Self:
        """Queue ``Client.node``."""
        return self._queue(c.node())

    def stats(self) -> Self:
        """Queue ``Client.stats``."""
        return self._queue(c.stats())

    def compact(self, shard: int | None = None) -> Self:
        """Queue ``Client.compact``."""
        return self._queue(c.compact(shard))

    def shard_stats(self, shard: int) -> Self:
        """Queue ``Client.shard_stats``."""
        return self._queue(c.shard_stats(shard))

    def snapshot_open(self, shard: int) -> Self:
        """Queue ``Client.snapshot_open``."""
        return self._queue(c.snapshot_open(shard))

    def snapshot_read(self, shard: int, snapshot: int, after: bytes | None = None,
                      limit: int = 10_000, max_bytes: int = 4 << 20) -> Self:
        """Queue ``Client.snapshot_read``."""
        return self._queue(c.snapshot_read(shard, snapshot, after, limit, max_bytes))

    def snapshot_close(self, shard: int, snapshot: int) -> Self:
        """Queue ``Client.snapshot_close``."""
        return self._queue(c.snapshot_close(shard, snapshot))


class Pipeline(Queue):
    """Commands queued and sent in one request. ``execute()`` returns their
    results in order; a failed command's exception object stands in its place
    (it is not raised). Used as a context manager it executes on exit and
    keeps the list in ``results``. The command methods take the arguments of
    the ``Client`` methods of the same name and return the pipeline."""

    def __init__(self, client: Executor) -> None:
        super().__init__()
        self.client = client

    def execute(self) -> list[Any]:
        """Send every queued command in one request; returns their results
        (an exception object in place of each that failed). Raises
        ``Timeout`` / ``ConnectionFailed`` if no reply came."""
        cmds, converts = self._take()
        if not cmds:
            return []
        return self._finish(self.client.execute(cmds), converts)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.execute()
