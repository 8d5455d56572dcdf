"""How the router reads its clients' frames in a loop turn (``Front``, a base
of ``loop.Router``): up to ``_DRAIN`` frames already waiting, each handled
by ``on_request``. Two cases read differently:

- near the client limit, each frame's descriptor tells whether its
  connection was admitted (``clients.py``); a refused one is answered
  ``Overloaded`` unread;
- with other routers and a read cache, the turn's frames are all read
  first, then what the workers sent meanwhile (the keys other routers
  wrote, which reach this router's links before those writes are
  acknowledged), and only then are the requests answered, some from the
  cache (``readcache.py``). Answering each frame as it is read would let a
  request that came late in a long turn miss a write acknowledged before it.
"""
from __future__ import annotations

from typing import Any

import zmq

from .. import errors, protocol
from ..zmqflags import NOBLOCK
from .shards import error as _err

_DRAIN = 2000            # client frames taken per loop turn
EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


class Front:
    front: zmq.Socket
    clients: Any             # ``clients.ClientLimit``
    peers: bool
    cache: Any
    counts: dict

    def on_request(self, frames: list) -> None:
        raise NotImplementedError

    def _drain_links_now(self) -> None:
        raise NotImplementedError

    def _reject(self, ident: bytes, rid: int, why: Any) -> None:
        raise NotImplementedError

    def _cache_synced(self) -> bool:
        """Must a turn's requests wait for what the workers sent meanwhile
        (other routers, and a read cache holding something)?"""
        return self.peers and self.cache is not None and bool(self.cache.bytes)

    def _drain_front(self) -> None:
        """Handle up to ``_DRAIN`` client frames already waiting."""
        if self.clients.near():
            return self._drain_front_refusing()
        if self._cache_synced():
            return self._drain_front_synced()
        front = self.front
        for _ in range(_DRAIN):
            try:
                frames = front.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            self.on_request(frames)
            if not front.get(EVENTS) & POLLIN:  # type: ignore[operator]  # 1.4 us; Again 3.7 (flin_perf.microbench)
                return

    def _drain_front_synced(self) -> None:
        """``_drain_front`` with other routers and a read cache: read the requests,
        then what the workers sent since (the keys other routers wrote reach our
        links before those writes are acknowledged), then answer (``readcache.py``)."""
        taken = []
        front = self.front
        for _ in range(_DRAIN):
            try:
                taken.append(front.recv_multipart(NOBLOCK))
            except zmq.Again:
                break
            if not front.get(EVENTS) & POLLIN:  # type: ignore[operator]
                break
        if not taken:
            return
        self._drain_links_now()
        for frames in taken:
            self.on_request(frames)

    def _drain_front_refusing(self) -> None:
        """``_drain_front`` near the client limit: each frame's descriptor
        tells whether its connection was admitted."""
        clients = self.clients
        taken = []
        for _ in range(_DRAIN):
            clients.catch_up()
            try:
                frames = self.front.recv_multipart(NOBLOCK, copy=False)
            except zmq.Again:
                break
            taken.append((clients.refuses(frames[0]), [f.bytes for f in frames]))
        if taken and self.peers and self.cache is not None:   # as _drain_front_synced
            self._drain_links_now()
        for refused, data in taken:
            if refused:
                self.counts["requests"] += 1
                self._refuse(data)
            else:
                self.on_request(data)

    def _refuse(self, frames: list) -> None:
        """A frame from a connection past the client limit: Overloaded for each request."""
        ident, body = frames[0], frames[-1]
        try:
            rids = [rid for rid, _ in protocol.decode_requests(body)]
        except ValueError:
            rids = [protocol.request_id_of(body)]
        refusal = _err(errors.Overloaded, self.clients.why())
        for rid in rids:
            self._reject(ident, rid, refusal)
