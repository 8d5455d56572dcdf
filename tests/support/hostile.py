"""Helpers for the hostile-input tests (test_bombs, test_fuzz): a raw DEALER
that pipelines frames and counts the answers, a seeded mutator of valid
requests, and the checks that follow an attack (processes alive, memory
bounded, data intact). Real sockets against a real cluster; no mocks."""
from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import msgpack
import zmq

from flin import protocol
from flin.protocol import (
    CAS, DEL, EXISTS, EXPIRE, GET, INCR, MGET, MSET, PERSIST, PING, SCAN, SET, STATUS, TTL,
)

SOAK = os.environ.get("FLIN_SOAK") == "1"
# error codes a hostile request may legitimately earn: BadRequest, TooLarge,
# NotAnInteger, Overflow (a mutated INCR is still an INCR). Anything else
# (InternalError, StorageError, a stalled shard) is a finding.
EXPECTED_CODES = {1, 2, 3, 4}
_SHARD_CAUGHT = ("bad arguments", "unknown shard op")   # store.apply's catch-all answers


# -- processes ------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def hwm_kib(pid: int) -> int:
    """Peak resident memory of ``pid`` in KiB (VmHWM) since ``reset_hwm``."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for %d" % pid)


def reset_hwm(pid: int) -> None:
    """Start measuring ``pid``'s peak memory again from its present VmRSS."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


def cluster_rss(cluster) -> dict[int, int]:
    """VmRSS (KiB) of the router and every worker (the supervisor's children)."""
    return {pid: rss_kib(pid) for pid in sorted(cluster.child_pids())}


def assert_memory_bounded(before: dict[int, int], after: dict[int, int],
                          bound_kib: int = 64 * 1024) -> None:
    """Same processes, none grown by more than ``bound_kib``."""
    assert set(after) == set(before), "processes changed: %s -> %s" % (sorted(before), sorted(after))
    grown = {pid: after[pid] - before[pid] for pid in before}
    assert max(grown.values()) <= bound_kib, "memory grew (KiB): %s" % grown


# -- the raw peer -----------------------------------------------------------------------
@dataclass
class Tally:
    sent: int = 0
    expected: int = 0                    # replies owed: one per request (a frame may hold several)
    replies: int = 0
    errors: int = 0                      # replies carrying at least one error
    codes: Counter = field(default_factory=Counter)
    late: list = field(default_factory=list)   # errors a shard caught: the router's checks missed them

    def add(self, other: "Tally") -> None:
        self.sent += other.sent
        self.expected += other.expected
        self.replies += other.replies
        self.errors += other.errors
        self.codes.update(other.codes)
        self.late += other.late


class RawPeer:
    """A DEALER that sends whatever it is given, many messages in flight."""

    def __init__(self, endpoint: str, window: int = 2000, identity: bytes | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(endpoint)
        self.window = window

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> "RawPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ask(self, *frames: bytes, timeout_ms: int = 5000):
        """Send one message; its decoded reply ``(rid, results)``."""
        self.sock.send_multipart(list(frames))
        assert self.sock.poll(timeout_ms), "no reply: the router dropped the message or died"
        return protocol.decode(self.sock.recv())

    def blast(self, messages, tally: Tally | None = None, timeout_s: float = 15.0) -> Tally:
        """Send every message (a frame, or a list of frames), ``window`` in
        flight; expect exactly one reply each; classify the replies."""
        t = tally if tally is not None else Tally()
        sock, inflight = self.sock, 0

        def take(block: bool) -> bool:
            nonlocal inflight
            if not sock.poll(int(timeout_s * 1000) if block else 0):
                if block:
                    raise AssertionError("%d of %d messages unanswered after %.0fs"
                                         % (inflight, t.sent, timeout_s))
                return False
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return True
                for _, results in protocol.decode_replies(frame):  # replies share frames
                    inflight -= 1
                    t.replies += 1
                    bad = [results] if type(results) is protocol.ErrorReply else \
                        [r for r in results if type(r) is protocol.ErrorReply]
                    if bad:
                        t.errors += 1
                        t.codes.update(r.code for r in bad)
                        t.late += [r.message for r in bad if r.message.startswith(_SHARD_CAUGHT)]

        for msg in messages:
            if type(msg) is list:
                sock.send_multipart(msg)
            else:
                sock.send(msg)
            owed = expected_replies(msg)
            t.sent += 1
            t.expected += owed
            inflight += owed
            if inflight >= self.window:
                take(True)
                while inflight > self.window // 2:
                    take(True)
        while inflight:
            take(True)
        return t


def expected_replies(msg) -> int:
    """Replies a message must get: one per request when its frame decodes as
    several requests (``[[id, [...]], ...]``), else exactly one."""
    if type(msg) is list:
        return 1
    try:
        return len(protocol.decode_requests(msg))
    except ValueError:
        return 1


# -- a peer below libzmq: raw ZMTP 3.0 over the ipc socket ---------------------------
def zmtp_connect(endpoint: str, timeout: float = 5.0) -> socket.socket:
    """A Unix socket that has done the ZMTP 3.0 NULL handshake as a DEALER,
    so that the test can then write frame headers libzmq would never send."""
    assert endpoint.startswith("ipc://")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(endpoint[len("ipc://"):])
    s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
              + b"\x00" + b"\x00" * 31)
    greeting = _read(s, 64)
    assert greeting[0] == 0xFF and greeting[10] == 3, greeting
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    s.sendall(b"\x04" + bytes((len(body),)) + body)
    flags = _read(s, 1)[0]           # the router's READY command
    size = _read(s, 1)[0] if not flags & 0x02 else struct.unpack(">Q", _read(s, 8))[0]
    _read(s, size)
    return s


def zmtp_frame(payload: bytes) -> bytes:
    """One final message frame as ZMTP puts it on the wire."""
    if len(payload) < 256:
        return b"\x00" + bytes((len(payload),)) + payload
    return b"\x02" + struct.pack(">Q", len(payload)) + payload


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def closed_by_peer(s: socket.socket, timeout: float = 5.0) -> bool:
    """True once the other end has closed ``s`` (EOF or reset) within ``timeout``."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# -- the mutator --------------------------------------------------------------------------
_INTERESTING = [0x00, 0x7F, 0x80, 0x90, 0x9F, 0xA0, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5,
                0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCF, 0xD3, 0xD4, 0xD8, 0xD9, 0xDA,
                0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF]
_HEADERS = [b"\xdd\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x05", b"\xdc\xff\xff",
            b"\x91" * 2000, b"\xa2\xff\xfe", b"\xd4\x01\x01", b"\xd6\xff\x00\x00\x00\x00"]


def _odd(rnd: random.Random):
    """A value of a random msgpack type, some of them hostile."""
    return rnd.choice([
        None, True, False, 0, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 1.5, float("nan"),
        "s", "\u00e9" * 3, b"", b"x" * rnd.randrange(1, 70), [], [[[]]], [b"k"] * 3,
        msgpack.ExtType(1, b"\x01boom"), msgpack.Timestamp(1, 0),
        rnd.randrange(-2 ** 40, 2 ** 40), rnd.randbytes(rnd.randrange(0, 16)),
    ])


class Mutator:
    """Seeded stream of malformed and mutated requests, built from valid ones
    whose keys all start with ``fz:`` (so the data check's keys are never hit)."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def key(self) -> bytes:
        return b"fz:%d" % self.rnd.randrange(500)

    def command(self) -> list:
        r, k = self.rnd, self.key
        op = r.randrange(14)
        return [
            lambda: [PING],
            lambda: [GET, k()],
            lambda: [SET, k(), r.randbytes(r.randrange(0, 40)), r.choice([None, 60_000]), r.choice([0, 1, 2])],
            lambda: [DEL, [k() for _ in range(r.randrange(0, 4))]],
            lambda: [EXISTS, k()],
            lambda: [MGET, [k() for _ in range(r.randrange(0, 6))]],
            lambda: [MSET, [x for _ in range(r.randrange(1, 4)) for x in (k(), b"v")], None],
            lambda: [INCR, b"fz:n%d" % r.randrange(5), r.randrange(-9, 9), r.randbytes(12)],
            lambda: [EXPIRE, k(), 60_000],
            lambda: [PERSIST, k()],
            lambda: [TTL, k()],
            lambda: [CAS, k(), None, b"c", r.randbytes(12)],
            lambda: [SCAN, b"fz:", None, r.randrange(1, 20), r.random() < 0.5],
            lambda: [STATUS] if r.random() < 0.05 else [PING],
        ][op]()

    def valid(self) -> list:
        return [self.rnd.randrange(1, 2 ** 32), [self.command() for _ in range(self.rnd.randrange(1, 4))]]

    def structural(self) -> bytes:
        """A valid request with one part swapped for a value of another type,
        or an argument added or removed."""
        r = self.rnd
        rid, cmds = self.valid()
        cmd = cmds[r.randrange(len(cmds))]
        how = r.randrange(5)
        if how == 0:
            cmd[r.randrange(len(cmd))] = _odd(r)
        elif how == 1:
            cmd.append(_odd(r))
        elif how == 2 and len(cmd) > 1:
            cmd.pop()
        elif how == 3:
            cmds[r.randrange(len(cmds))] = _odd(r)
        else:
            return msgpack.packb([_odd(r), cmds] if r.random() < 0.5 else [rid, _odd(r)])
        return msgpack.packb([rid, cmds])

    def bytewise(self) -> bytes:
        """A valid request's bytes, flipped, cut, spliced or given a bomb header."""
        r = self.rnd
        b = bytearray(msgpack.packb(self.valid()))
        for _ in range(r.randrange(1, 4)):
            how = r.randrange(7)
            pos = r.randrange(len(b) + 1)
            if how == 0 and b:
                b[min(pos, len(b) - 1)] ^= 1 << r.randrange(8)
            elif how == 1 and b:
                b[min(pos, len(b) - 1)] = r.choice(_INTERESTING)
            elif how == 2:
                del b[pos:pos + r.randrange(1, 8)]
            elif how == 3:
                b[pos:pos] = r.randbytes(r.randrange(1, 8))
            elif how == 4:
                b[pos:pos] = r.choice(_HEADERS)
            elif how == 5:
                del b[pos:]
            else:
                b[pos:pos] = b[r.randrange(len(b) + 1):][:16]
        return bytes(b)

    def message(self):
        """One hostile message: mostly one frame, sometimes several."""
        r = self.rnd
        x = r.random()
        if x < 0.45:
            return self.bytewise()
        if x < 0.85:
            return self.structural()
        if x < 0.95:
            return r.randbytes(r.randrange(0, 64))
        return [self.bytewise() for _ in range(r.randrange(2, 4))] if r.random() < 0.7 \
            else [b"", msgpack.packb(self.valid())]

    def messages(self, n: int):
        for _ in range(n):
            yield self.message()


# -- the data check ------------------------------------------------------------------------
def known_items(n: int) -> dict[bytes, bytes]:
    return {b"known:%06d" % i: b"value-%06d-" % i + b"x" * (i % 50) for i in range(n)}


def write_known(client, items: dict[bytes, bytes]) -> None:
    pairs = list(items.items())
    for i in range(0, len(pairs), 500):
        client.mset(pairs[i:i + 500])


def check_known(client, items: dict[bytes, bytes]) -> None:
    keys = list(items)
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        assert client.mget(chunk) == [items[k] for k in chunk]
    found = list(client.scan_iter(b"known:", page=1000))
    assert found == sorted(keys)


def deadline_loop(seconds: float):
    """Yield until ``seconds`` have passed (for time-boxed soak loops)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
