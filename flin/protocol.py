"""Flin's wire format: the only module that knows it (and imports msgpack).

Every message is ONE ZeroMQ frame holding one msgpack array ``[id, items]``
(FACTS.md: a frame costs more than packing, so many operations share a frame).
A ROUTER socket adds the peer identity frame itself; nothing else is framed.

Client -> router (request)      ``[req_id, [command, command, ...]]``
Router -> client (reply)        ``[req_id, [result, result, ...]]``
  (a client may put several requests in one frame, ``[[req_id, [...]], ...]``,
  and the router puts every reply ready for one client in one frame the
  same way: fewer frames, each request still answered on its own)
Router -> shard worker (batch)  ``[batch_id, [op, op, ...]]``
Shard worker -> router          ``[batch_id, [result, result, ...]]``
  (or, for a batch whose results are big, first ``[batch_id, [result, ...], 1]``:
  the results of its next ops, more to come; the last part has no third item)
Shard worker hello (on start)   ``[0, [shard_id, pid]]``
Shard worker -> other routers   ``[-1, [key, ...]]`` (``WRITTEN_ID``: the keys a batch of
  another router's wrote, before it is answered: ``flin.router.readcache``)

Between router and worker on one host the frames travel over a Unix stream
socket, each as a 4-byte little-endian length and the frame (``flin.linkframe``:
``link_frame``, ``LinkReader``); with ``--backend-keys`` over ZeroMQ, one frame per message.

A command is an array that starts with its opcode::

    [PING]                                   -> True
    [GET, key]                               -> value | nil
    [SET, key, value, ttl_ms|nil, flags]     -> nil, bool with NX/XX, value with GET_OLD
    [DEL, [key, ...]]                        -> number deleted
    [EXISTS, key]                            -> bool
    [MGET, [key, ...]]                       -> [value|nil, ...]
    [MSET, [key, value, key, value, ...], ttl_ms|nil] -> nil
    [INCR, key, by, request_uid|nil]         -> int (DECR is INCR by -n)
    [EXPIRE, key, ttl_ms]                    -> bool
    [PERSIST, key]                           -> bool
    [TTL, key]                               -> ms left, -1 no expiry, -2 missing
    [CAS, key, expected|nil, new, request_uid|nil] -> bool
    [SCAN, prefix, start_after|nil, limit, values] -> [[key, ...] or [[key, value], ...], cursor|nil]
    [STATUS]                                 -> {"router": {...}, "shards": [...]}
    [STATS]                                  -> {"router": {...}, "shards": [{...}, ...]}
    [COMPACT]                                -> [bool, ...] one per shard: compaction started
    [SHARD, shard_id, admin_op]              -> admin_op's result, from that shard only
    [ROUTERS]                                -> [endpoint, ...] every router of the host,
                                                router 0 first (answered by the router itself)
    [NODE]                                   -> cluster mode: the node's view of its cluster
                                                ({"name", "node", "epoch", "nodes", "placement",
                                                "move", "etcd"}), nil on one host (the router's)
    [GETDEL, key]                            -> value | nil, and the key is deleted
    [REPLICA, [GET|MGET|EXISTS|TTL, ...]]    -> that read's result, from any copy of its
                                                shard (replicas: it may be stale)

``STATS``: every shard's counters and the router's own (``flin.router.stats``).
``SHARD`` addresses one shard without hashing, for the admin ops only::

    [STATS]                                  -> the shard's counters
    [COMPACT]                                -> True if started, False if one runs
    [SNAPSHOT_OPEN]                          -> snapshot id (int)
    [SNAPSHOT_READ, id, after|nil, limit, max_bytes]
                                             -> [[raw_key, raw_value, ...], last|nil]
    [SNAPSHOT_CLOSE, id]                     -> bool (False: unknown or expired)

Results are bounded in bytes (``MAX_REPLY``): an MGET, or a request's
results together, past it is answered ``TooLarge`` (a pipeline: in the
entries that pass it); a SCAN page is cut short there instead.

A snapshot is a LevelDB snapshot taken when it opens; SNAPSHOT_READ pages raw
entries (every prefix, in key order) after the raw key ``after``, at most
``limit`` entries and about ``max_bytes`` (always at least one); ``last`` is
the cursor for the next page, nil at the end. An idle snapshot is released
after ``SNAPSHOT_IDLE_S``.

A shard op uses the same opcodes and shapes, for the keys of that shard only:
the router sends each shard one ``MGET``/``MSET``/``DEL`` with its part of the
keys, and puts the answers back in the caller's order; a shard answers
``[SCAN, prefix, start_after, limit, values, max_bytes]`` (its part stops
past ``max_bytes`` of keys and values, after one entry at least) with
``[flat items, last key examined or nil]`` and ``PING``
with its pid. Keys and values are msgpack
``bin``; ``nil`` is a missing key, ``b""`` an empty value.

What each opcode is (writes or not, safe to resend, where its keys are) is
the one table ``OPS`` below; every other set is derived from it.

A result that is an error is the msgpack ext type 1 whose data is one byte
of error code (``flin.errors``) followed by a UTF-8 message; it decodes to
``ErrorReply``. A request that cannot be parsed at all is answered
``[req_id or 0, ErrorReply]`` (the items replaced by one error).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import msgpack

# -- opcodes: one table of what each one is -----------------------------------
PING, GET, SET, DEL, EXISTS, MGET, MSET, INCR = 0, 1, 2, 3, 4, 5, 6, 7
EXPIRE, PERSIST, TTL, CAS, SCAN, STATUS = 8, 9, 10, 11, 12, 13
STATS, SHARD, COMPACT, SNAPSHOT_OPEN, SNAPSHOT_READ, SNAPSHOT_CLOSE = 14, 15, 16, 17, 18, 19
ROUTERS, GETDEL = 20, 21
# resharding (``flin reshard``): a source's and a target's steps, and the router's own
MOVE_BEGIN, MOVE_READ, MOVE_DIRTY, MOVE_FENCE, MOVE_IMPORT = 22, 23, 24, 25, 26
MOVE_SWITCH, MOVE_ABORT, RESHARD = 27, 28, 29
NODE, REPLICA = 30, 31

# which arguments are keys (the read cache forgets them on a write)
NO_KEYS, ONE_KEY, KEY_LIST, KEY_VALUE_PAIRS = "none", "one", "list", "pairs"
# may a request whose outcome is unknown (timeout, OutcomeUnknown) be sent again?
# yes: same effect, same answer; no: the answer differs (DEL answers 0 again);
# uid: a request uid the shard remembers (applied once); plain: only without flags
RETRY_YES, RETRY_NO, RETRY_UID, RETRY_PLAIN = "yes", "no", "uid", "plain"


class OpInfo(NamedTuple):
    """What one opcode is. Every set the router, the read cache, the client
    and the stats need (writes, retry-safe, admin, data) comes from ``OPS``."""

    code: int
    name: str
    writes: bool     # changes data
    retry: str       # RETRY_*: may it be resent after an unknown outcome
    keys: str        # where its keys are: NO_KEYS, ONE_KEY (cmd[1]), KEY_LIST, KEY_VALUE_PAIRS
    admin: bool      # a shard admin op: allowed inside SHARD, not a shard's data load


OPS: tuple[OpInfo, ...] = (
    OpInfo(PING, "ping", False, RETRY_YES, NO_KEYS, True),
    OpInfo(GET, "get", False, RETRY_YES, ONE_KEY, False),
    OpInfo(SET, "set", True, RETRY_PLAIN, ONE_KEY, False),
    OpInfo(DEL, "del", True, RETRY_NO, KEY_LIST, False),
    OpInfo(EXISTS, "exists", False, RETRY_YES, ONE_KEY, False),
    OpInfo(MGET, "mget", False, RETRY_YES, KEY_LIST, False),
    OpInfo(MSET, "mset", True, RETRY_YES, KEY_VALUE_PAIRS, False),
    OpInfo(INCR, "incr", True, RETRY_UID, ONE_KEY, False),
    OpInfo(EXPIRE, "expire", True, RETRY_NO, ONE_KEY, False),
    OpInfo(PERSIST, "persist", True, RETRY_NO, ONE_KEY, False),
    OpInfo(TTL, "ttl", False, RETRY_YES, ONE_KEY, False),
    OpInfo(CAS, "cas", True, RETRY_UID, ONE_KEY, False),
    OpInfo(SCAN, "scan", False, RETRY_YES, NO_KEYS, False),
    OpInfo(STATUS, "status", False, RETRY_YES, NO_KEYS, False),
    OpInfo(STATS, "stats", False, RETRY_YES, NO_KEYS, True),
    OpInfo(SHARD, "shard", False, RETRY_NO, NO_KEYS, False),
    OpInfo(COMPACT, "compact", False, RETRY_YES, NO_KEYS, True),
    OpInfo(SNAPSHOT_OPEN, "snapshot_open", False, RETRY_NO, NO_KEYS, True),
    OpInfo(SNAPSHOT_READ, "snapshot_read", False, RETRY_YES, NO_KEYS, True),
    OpInfo(SNAPSHOT_CLOSE, "snapshot_close", False, RETRY_NO, NO_KEYS, True),
    OpInfo(ROUTERS, "routers", False, RETRY_YES, NO_KEYS, False),
    OpInfo(GETDEL, "getdel", True, RETRY_NO, ONE_KEY, False),
    OpInfo(MOVE_BEGIN, "move_begin", False, RETRY_NO, NO_KEYS, True),
    OpInfo(MOVE_READ, "move_read", False, RETRY_YES, NO_KEYS, True),
    OpInfo(MOVE_DIRTY, "move_dirty", False, RETRY_NO, NO_KEYS, True),
    OpInfo(MOVE_FENCE, "move_fence", False, RETRY_YES, NO_KEYS, True),
    OpInfo(MOVE_IMPORT, "move_import", False, RETRY_YES, NO_KEYS, True),
    OpInfo(MOVE_SWITCH, "move_switch", False, RETRY_YES, NO_KEYS, True),
    OpInfo(MOVE_ABORT, "move_abort", False, RETRY_YES, NO_KEYS, True),
    OpInfo(RESHARD, "reshard", False, RETRY_NO, NO_KEYS, False),
    OpInfo(NODE, "node", False, RETRY_YES, NO_KEYS, False),
    OpInfo(REPLICA, "replica", False, RETRY_YES, NO_KEYS, False),
)
OP_INFO: dict[int, OpInfo] = {op.code: op for op in OPS}
OP_NAMES: dict[int, str] = {op.code: op.name for op in OPS}
WRITES = frozenset(op.code for op in OPS if op.writes)
ADMIN_OPS = frozenset(op.code for op in OPS if op.admin)
DATA_OP_NAMES = frozenset(op.name for op in OPS
                          if not op.admin and op.code not in (STATUS, SHARD, ROUTERS, RESHARD, NODE,
                                                         REPLICA))


def written_keys(op: list[Any]) -> list[bytes]:
    """The keys a write op changes (for the read cache)."""
    where = OP_INFO[op[0]].keys
    if where == ONE_KEY:
        return [op[1]]
    if where == KEY_LIST:
        return op[1]  # type: ignore[no-any-return]
    if where == KEY_VALUE_PAIRS:
        return op[1][::2]  # type: ignore[no-any-return]
    return []


def retry_safe(cmd: list[Any]) -> bool:
    """May ``cmd`` be sent again when its outcome is unknown?"""
    info = OP_INFO.get(cmd[0])
    if info is None:
        return False
    if info.retry == RETRY_PLAIN:
        return len(cmd) > 4 and not cmd[4]
    return info.retry in (RETRY_YES, RETRY_UID)


# SET flags: NX or XX; GET_OLD answers the value before (wrote or not: SET..GET);
NX, XX, GET_OLD, KEEP_TTL = 1, 2, 4, 8   # KEEP_TTL keeps the expiry (ttl nil)

# -- limits (documented in README "Limits") -----------------------------------
MAX_KEY = 64 * 1024                 # bytes per key
MAX_VALUE = 64 * 1024 * 1024        # bytes per value
MAX_MESSAGE = 80 * 1024 * 1024      # bytes per request frame (libzmq MAXMSGSIZE)
MAX_REPLY = 80 * 1024 * 1024        # bytes of keys and values in one request's results
MAX_ITEMS = 100_000                 # commands per request, keys per MGET/MSET/DEL
MAX_SCAN_LIMIT = 10_000             # keys per SCAN page
MAX_TTL_MS = 100 * 365 * 86_400_000  # 100 years, in ms
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024  # bytes per SNAPSHOT_READ page (past one entry)
SNAPSHOT_IDLE_S = 60.0              # s an unused snapshot is kept
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7700"   # a router's client endpoint unless told otherwise
DEFAULT_RESP = "127.0.0.1:7379"             # where `flin start` speaks the Redis protocol
HELLO_ID = 0                        # batch id of a worker's hello message
WRITTEN_ID = -1                     # batch id of a worker's "keys written" message
PROBE_ID = -2                       # batch id of a router's probe of a link (its answer is ignored)
_ERR_EXT = 1                        # msgpack ext type of an error result


_packb: Callable[..., bytes] = msgpack.packb   # typed once: msgpack's own stubs say Any


class ErrorReply:
    """An error in place of a result: ``code`` from ``flin.errors``."""

    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ErrorReply({self.code}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ErrorReply)
                and (self.code, self.message) == (other.code, other.message))


def _default(obj: Any) -> Any:
    if isinstance(obj, ErrorReply):
        return msgpack.ExtType(_ERR_EXT, bytes((obj.code,)) + obj.message.encode())
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _ERR_EXT and data:
        return ErrorReply(data[0], data[1:].decode("utf-8", "replace"))
    raise ValueError(f"unknown ext type {code}")


def encode(msg_id: int, items: Any) -> bytes:
    """Pack one message ``[msg_id, items]`` into a single frame."""
    return _packb((msg_id, items), default=_default)


def pack_blob(obj: Any) -> bytes:
    """``obj`` (bytes, ints, lists; no errors) as bytes that travel inside a
    message untouched (a reshard's page of entries: ``MOVE_READ``)."""
    return _packb(obj)


def unpack_blob(blob: bytes) -> Any:
    """What ``pack_blob`` packed."""
    return msgpack.unpackb(blob)


def decode(frame: bytes) -> tuple[int, Any]:
    """Unpack a message from a trusted peer (a reply or a batch)."""
    msg = msgpack.unpackb(frame, ext_hook=_ext_hook, strict_map_key=False)
    return msg[0], msg[1]


def encode_part(msg_id: int, items: list[Any]) -> bytes:
    """A shard's reply to part of a batch: ``[msg_id, items, 1]``, more to come."""
    return _packb((msg_id, items, 1), default=_default)


def decode_reply(frame: bytes) -> tuple[int, Any, bool]:
    """A shard's message: ``(batch_id, results, more)``; ``more`` for a part."""
    msg = msgpack.unpackb(frame, ext_hook=_ext_hook, strict_map_key=False)
    return msg[0], msg[1], len(msg) > 2


def decode_requests(frame: bytes) -> list[tuple[int, list[Any]]]:
    """Unpack a client frame, bounded against hostile input: one request
    ``[req_id, [command, ...]]`` or several ``[[req_id, [command, ...]], ...]``.

    Raises ``ValueError`` with a reason for anything else, or past the
    limits: oversized lengths, maps, ext types, bad UTF-8 or nesting too
    deep are refused before allocation; all requests of a frame together
    carry at most ``MAX_ITEMS`` commands.
    """
    if len(frame) > MAX_MESSAGE:
        raise ValueError("message larger than %d bytes" % MAX_MESSAGE)
    try:
        msg = msgpack.unpackb(
            # bins up to the frame cap pass, so that the planner refuses an
            # oversized key or value with TooLarge rather than BadRequest
            frame, max_bin_len=MAX_MESSAGE, max_str_len=MAX_KEY,
            max_array_len=2 * MAX_ITEMS, max_map_len=0, max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.StackError,
            msgpack.ExtraData, msgpack.FormatError) as exc:
        raise ValueError(f"undecodable message: {type(exc).__name__}: {exc}") from None
    if type(msg) is not list or not msg:
        raise ValueError(_SHAPE)
    requests = [msg] if type(msg[0]) is int else msg
    total = 0
    for req in requests:
        if type(req) is not list or len(req) != 2 or type(req[0]) is not int \
                or type(req[1]) is not list:
            raise ValueError(_SHAPE)
        total += len(req[1])
    if total > MAX_ITEMS:
        raise ValueError("more than %d commands in one frame" % MAX_ITEMS)
    return requests  # type: ignore[return-value]


_SHAPE = "a request is [request_id, [command, ...]], or a frame of several [[id, [...]], ...]"


def encode_requests(requests: list[tuple[int, list[Any]]]) -> bytes:
    """Several requests in one frame (one request: plain ``[id, commands]``)."""
    if len(requests) == 1:
        return _packb(requests[0], default=_default)
    return _packb(requests, default=_default)


def encode_replies(replies: list[tuple[int, Any]]) -> bytes:
    """The replies for one client, in one frame (the same two shapes)."""
    if len(replies) == 1:
        return _packb(replies[0], default=_default)
    return _packb(replies, default=_default)


def decode_replies(frame: bytes) -> list[tuple[int, Any]]:
    """Every ``(req_id, results)`` in a reply frame."""
    msg = msgpack.unpackb(frame, ext_hook=_ext_hook, strict_map_key=False)
    if type(msg[0]) is int:
        return [(msg[0], msg[1])]
    return [(m[0], m[1]) for m in msg]


def request_id_of(frame: bytes) -> int:
    """Best-effort request id of a frame that failed to decode (0 if none)."""
    try:
        head = msgpack.Unpacker(max_buffer_size=64)
        head.feed(frame[:16])
        if head.read_array_header() >= 1:
            rid = head.unpack()
            if type(rid) is int:
                return rid
    except Exception:
        pass
    return 0
