"""How the router serves its RESP connections (``RespFront``, a base of
``loop.Router``): each connection's commands of a loop turn become one
``RespBatch``, planned and routed like any request, and its replies are
written in order when the last result is in. The protocol itself is
``flin.router.resp``'s."""
from __future__ import annotations

import logging
from typing import Any

from . import stats
from .pending import RespBatch

log = logging.getLogger("flin.router")


class RespFront:
    resp: Any                  # ``resp.server.RespServer``, or None
    resp_commands: Any         # ``resp.commands.Commands``
    peers: bool
    cache: Any
    stats: Any

    def route_commands(self, req: Any, cmds: list) -> None:
        raise NotImplementedError

    def _drain_links_now(self) -> None:
        raise NotImplementedError

    def _cache_synced(self) -> bool:
        raise NotImplementedError

    def _drain_resp(self) -> None:
        """The RESP connections' commands of this turn (with other routers and
        a read cache, after what the workers sent: as ``Front._drain_front_synced``)."""
        got = self.resp.poll()
        if not got:
            return
        if self._cache_synced():             # as Front._drain_front_synced
            self._drain_links_now()
        for conn, cmds in got:
            self.on_resp(conn, cmds)

    def on_resp(self, conn: Any, cmds: list) -> None:
        """A RESP connection's commands of this loop turn, as one request:
        each becomes its reply or Flin commands (``resp.commands``), and all
        of those are planned and routed together."""
        translate = self.resp_commands.translate
        session = conn.session
        parts: list = []
        flin: list = []
        busy = self.resp.busy_reply(conn)
        if busy is not None:                   # its replies wait unread: not run (as Overloaded)
            self.resp.answer(conn, busy * len(cmds))
            return
        for args in cmds:
            if type(args) is bytes:            # an error line the parser made
                parts.append(args)
                continue
            try:
                part = translate(session, args)
            except Exception:                  # a bug: answer it, stay up
                log.exception("RESP: %r failed", args[:1])
                part = b"-ERR internal error (see the router's log)\r\n"
            if type(part) is bytes:
                parts.append(part)
            else:
                ops, finish = part
                parts.append((len(flin), len(ops), finish))
                flin.extend(ops)
            if session.quit:                   # QUIT: what follows it is not run
                break
        batch = RespBatch(conn, parts, len(flin), stats.request_kind(flin))
        self.stats.inflight += 1
        self.route_commands(batch, flin)

    def resp_reply(self, batch: RespBatch) -> None:
        """Write a finished RESP batch's replies, in order."""
        results = batch.results
        proto = batch.conn.session.proto
        out = []
        for part in batch.parts:
            if type(part) is bytes:
                out.append(part)
                continue
            start, n, finish = part
            try:
                out.append(finish(results[start:start + n], proto))
            except Exception:
                log.exception("RESP: a reply failed")
                out.append(b"-ERR internal error (see the router's log)\r\n")
        self.resp.answer(batch.conn, b"".join(out))
