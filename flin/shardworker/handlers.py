"""The one table of shard op handlers: opcode -> ``handler(store, op)``.

Reads (``reads.py``) and writes (``writes.py``) live apart; the one place
that writes is ``Store._commit``; admin ops (``admin.py``) are handlers like
any other. An opcode missing here is answered ``BadRequest`` by the shard.
"""
from __future__ import annotations

from ..protocol import (
    CAS, COMPACT, DEL, EXISTS, EXPIRE, GET, GETDEL, INCR, MGET, MOVE_ABORT, MOVE_BEGIN, MOVE_DIRTY,
    MOVE_FENCE, MOVE_IMPORT, MOVE_READ, MOVE_SWITCH, MSET, PERSIST, PING, SCAN, SET,
    SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, STATS, TTL,
)
from . import admin, moving, reads, writes
from .store import Handler

HANDLERS: dict[int, Handler] = {
    # reads
    PING: reads.ping, GET: reads.get, MGET: reads.mget, EXISTS: reads.exists,
    TTL: reads.ttl, SCAN: reads.scan,
    # writes
    SET: writes.set_, MSET: writes.mset, DEL: writes.delete, INCR: writes.incr,
    EXPIRE: writes.expire, PERSIST: writes.persist, CAS: writes.cas, GETDEL: writes.getdel,
    # admin
    STATS: admin.stats, COMPACT: admin.compact, SNAPSHOT_OPEN: admin.snapshot_open,
    SNAPSHOT_READ: admin.snapshot_read, SNAPSHOT_CLOSE: admin.snapshot_close,
    # resharding
    MOVE_BEGIN: moving.move_begin, MOVE_READ: moving.move_read, MOVE_DIRTY: moving.move_dirty,
    MOVE_FENCE: moving.move_fence, MOVE_IMPORT: moving.move_import,
    MOVE_SWITCH: moving.move_switch, MOVE_ABORT: moving.move_abort,
}
