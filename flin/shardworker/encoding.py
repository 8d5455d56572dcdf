"""How a shard lays out its LevelDB (one prefix byte per kind, so scans never mix them):

    b"d" + key               -> header + value      the user's data
    b"x" + expiry_ms(8, BE) + raw_key -> b""        expiry index, oldest first
    b"u" + request_uid       -> result               remembered INCR/CAS results

A value's header is one byte: ``\\x00`` (no expiry) or ``\\x01`` followed by the
absolute expiry in ms since the epoch (8 bytes, big-endian).
"""
from __future__ import annotations

DATA, EXPIRY, UID = b"d", b"x", b"u"   # key prefixes
PLAIN = b"\x00"                        # header of a value without expiry
EXPIRING = 1                           # header byte of a value with an 8-byte expiry
MISSING = object()                     # "not in the overlay" (None there means deleted)


def value_of(raw: bytes) -> bytes:
    """The user's value inside a stored value."""
    return raw[1:] if raw[0] == 0 else raw[9:]


def expiry_of(raw: bytes) -> int:
    """A stored value's absolute expiry in ms, 0 if it has none."""
    return int.from_bytes(raw[1:9], "big") if raw[0] == EXPIRING else 0


def expiry_key(expiry_ms: int, raw_key: bytes) -> bytes:
    """The expiry index entry that makes ``sweep`` find ``raw_key`` at ``expiry_ms``."""
    return EXPIRY + expiry_ms.to_bytes(8, "big") + raw_key


def index_entry(raw_key: bytes, raw: bytes) -> bytes | None:
    """The expiry index entry a stored entry copied elsewhere needs (a move's
    import): None unless it is a value that expires."""
    if raw and raw[0] == EXPIRING and raw_key[:1] == DATA:
        return expiry_key(int.from_bytes(raw[1:9], "big"), raw_key)
    return None
