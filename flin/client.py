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

import time
from collections import deque
from typing import Any, Callable, Iterator

import zmq

from . import errors, protocol, security
from .clientcommands import _IDEMPOTENT, Commands, Key, _same
from .config import DEFAULT_ENDPOINT
from .protocol import CAS, INCR, SET, ErrorReply

_NOBLOCK = int(zmq.NOBLOCK)   # a plain int: pyzmq's enum flags cost ~1 us a call

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
        self._ready: deque[tuple[int, Any]] = deque()   # received, not yet handed out

    # -- transport ---------------------------------------------------------------
    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IMMEDIATE, 1)   # queue nothing for a router that is not there
            # no MAXMSGSIZE: replies come from the trusted router, and an MGET of
            # 64 MiB values, or several replies sharing a frame, may exceed any cap
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
        self._ready.clear()

    def submit(self, commands: list, timeout: float | None = None) -> int:
        """Send raw wire commands as one request without waiting; returns its id.
        Raises ``ConnectionFailed`` if the router cannot be reached in time,
        ``TooLarge`` past the message limit."""
        return self.submit_many([commands], timeout)[0]

    def submit_many(self, requests: list[list], timeout: float | None = None) -> list[int]:
        """Send several requests (each a list of raw wire commands) in ONE
        frame without waiting; each is answered on its own. Returns their ids.
        Raises ``ConnectionFailed`` or ``TooLarge`` as ``submit``."""
        if sum(len(r) for r in requests) > protocol.MAX_ITEMS:  # the router would refuse the frame whole
            raise errors.TooLarge("more than %d commands in one frame" % protocol.MAX_ITEMS)
        sock = self._socket()
        first = self._rid + 1
        self._rid += len(requests)
        frame = protocol.encode_requests(list(zip(range(first, self._rid + 1), requests)))
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
        return list(range(first, self._rid + 1))

    def receive(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next reply ``(request_id, results)`` of any request in flight.
        Raises ``Timeout`` after ``timeout`` seconds (default: the client's)."""
        if not self._ready:
            self._ready.extend(self.receive_all(timeout))
        return self._ready.popleft()

    def receive_all(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Every reply that has arrived, waiting up to ``timeout`` seconds for
        the first; raises ``Timeout`` if none came."""
        ready = list(self._ready)
        self._ready.clear()
        sock = self._socket()
        if not ready and not sock.poll(int(1000 * (self.timeout if timeout is None else timeout))):
            raise errors.Timeout("no reply from %s within %.1fs" % (self.endpoint, timeout or self.timeout))
        try:
            while True:
                try:
                    frame = sock.recv(_NOBLOCK)
                except zmq.Again:
                    return ready
                ready.extend(protocol.decode_replies(frame))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
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
