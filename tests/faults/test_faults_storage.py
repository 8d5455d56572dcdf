"""Catalogue 3-5: a torn shard log opens to a prefix of its history; flipped
bytes refuse the start with a repair hint, and `flin repair` never brings
back a value that was not written; a full disk fails writes, not reads."""
from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
import time
import warnings

import pytest

from flin import errors
from flin.ops.logsurgery import BLOCK, HEADER
from tests.support.cluster import ROOT, make_cluster
from tests.support.faults import SOAK

N = 300   # write batches in the history


def _history(tmp: str) -> str:
    """A 1-shard data folder whose log holds N batches: batch i writes
    seq:i = v<i> and last = i together (one pipeline, one write batch).
    Stopped cleanly, so the batches are still in the .log."""
    c = make_cluster(tmp, 1).start()
    try:
        with c.client() as cl:
            for i in range(N):
                with cl.pipeline() as p:
                    p.set("seq:%04d" % i, b"v%d" % i)
                    p.set("last", b"%d" % i)
    finally:
        assert c.stop() == 0
    return c.data


def _log_of(data: str) -> str:
    folder = os.path.join(data, "shard-00")
    logs = [n for n in os.listdir(folder) if n.endswith(".log")]
    path = max((os.path.join(folder, n) for n in logs), key=os.path.getsize)
    assert os.path.getsize(path) > 10_000, "the history is not in the log"
    return path


def _state(c) -> tuple[dict, bytes | None]:
    with c.client() as cl:
        keys = ["seq:%04d" % i for i in range(N)]
        got = dict(zip(keys, cl.mget(keys)))
        return got, cl.get("last")


def _assert_prefix(got: dict, last: bytes | None) -> int:
    """The state is batches 0..m-1 exactly, for some m; returns m."""
    present = [i for i in range(N) if got["seq:%04d" % i] is not None]
    m = len(present)
    assert present == list(range(m)), "a hole in the history: %s" % present[:20]
    for i in present:
        assert got["seq:%04d" % i] == b"v%d" % i, "wrong value for seq:%04d" % i
    assert last == (None if m == 0 else b"%d" % (m - 1)), (m, last)
    return m


def test_truncated_log_opens_to_a_prefix(tmp_short):
    """3: the shard's .log cut at random offsets: it opens, and holds a prefix."""
    os.makedirs(os.path.join(tmp_short, "h"))
    pristine = _history(os.path.join(tmp_short, "h"))
    rnd = random.Random(3)
    kept = []
    for n in range(12 if SOAK else 3):
        run = os.path.join(tmp_short, "t%d" % n)
        shutil.copytree(os.path.dirname(pristine), run, ignore=shutil.ignore_patterns("*.sock"))
        log = _log_of(os.path.join(run, "data"))
        size = os.path.getsize(log)
        cut = rnd.randrange(size // 10, size)
        os.truncate(log, cut)
        c = make_cluster(run, 1).start()
        try:
            kept.append(_assert_prefix(*_state(c)))
        finally:
            assert c.stop() == 0
    print("\n[catalogue 3] logs cut at random offsets kept prefixes of %s of %d batches" % (kept, N))
    assert any(0 < m < N for m in kept), kept   # the cuts did cut into the history


def _payload_offsets(path: str) -> list[int]:
    """Offsets of record payload bytes in a LevelDB log (not headers, not padding)."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:
            break
        out.extend(range(pos + HEADER, pos + HEADER + length))
        pos += HEADER + length
    return out


def test_flipped_bytes_refused_then_repaired(tmp_short):
    """4: a flipped byte in a shard's log: `flin start` refuses, naming the
    shard and `flin repair`; after `flin repair` the shard opens and holds a
    prefix of its history, never a value that was not written."""
    data = _history(tmp_short)
    log = _log_of(data)
    size = os.path.getsize(log)
    offsets = _payload_offsets(log)
    rnd = random.Random(4)
    at = rnd.choice(offsets[len(offsets) // 4: 3 * len(offsets) // 4])
    with open(log, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x5A]))
    start = [sys.executable, "-m", "flin", "start", "--data", data, "--shards", "1",
             "--bind", "ipc://" + os.path.join(tmp_short, "c.sock")]
    out = subprocess.run(start, cwd=ROOT, capture_output=True, timeout=60)
    err = out.stderr.decode()
    assert out.returncode != 0, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "shard 0" in last and "flin repair" in last, err[-2000:]

    rep = subprocess.run([sys.executable, "-m", "flin", "repair", "--data", data],
                         cwd=ROOT, capture_output=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    assert b"damaged" in rep.stdout and b"opens cleanly" in rep.stdout, rep.stdout
    c = make_cluster(tmp_short, 1).start()
    try:
        m = _assert_prefix(*_state(c))
        with c.client() as cl:      # and it takes writes again
            cl.set("after", b"repair")
            assert cl.get("after") == b"repair"
    finally:
        assert c.stop() == 0
    print("\n[catalogue 4] byte %d of %d flipped: start refused (%r); repaired to %d of %d batches"
          % (at, size, last[:120], m, N))
    assert 0 < m < N, m


def _mount_tmpfs(path: str, size: str) -> None:
    """A small tmpfs to fill. The suite runs as root (CI, scripts/test), where
    a failed mount is a failure of the test, not a reason to skip it; as
    another user it is skipped, with a warning that says so."""
    os.makedirs(path, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path],
                           capture_output=True, timeout=30)
        why = r.stderr.decode().strip() if r.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = str(exc)
    if not why:
        return
    if os.geteuid() == 0:
        pytest.fail("cannot mount a tmpfs to fill, even as root: %s" % why)
    warnings.warn("NOT TESTED: the disk-full test needs root to mount a tmpfs (%s)" % why)
    pytest.skip("NOT TESTED: the disk-full test needs root to mount a tmpfs: %s" % why)


def _fill(path: str, leave: int) -> None:
    """Write a filler file until the file system is full, then give back ``leave`` bytes."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(path, max(0, os.path.getsize(path) - leave))


def test_disk_full(tmp_short):
    """5: a full data disk: writes fail with StorageError and are not
    acknowledged, reads go on; once space returns writes resume, and
    everything acknowledged is there after a restart."""
    c = make_cluster(tmp_short, 2, ["--read-cache-mb", "0"])   # reads go to the LevelDB
    _mount_tmpfs(c.data, "8m")
    filler = os.path.join(c.data, "filler")
    try:
        c.start()
        acked: dict = {}
        with c.client(timeout=5.0) as cl:
            for i in range(50):
                cl.set("pre:%d" % i, b"p%d" % i)
                acked[b"pre:%d" % i] = b"p%d" % i
            _fill(filler, 256 * 1024)
            value = os.urandom(16 * 1024)
            failed, written = None, 0
            for i in range(2000):
                key = b"full:%d" % i
                try:
                    cl.set(key, value + b"%d" % i)
                    acked[key] = value + b"%d" % i
                    written += 1
                except errors.StorageError as exc:
                    failed = (key, exc)
                    break
            assert failed is not None, "the disk never filled"
            key, exc = failed
            assert cl.get(key) is None, "a refused write was applied"
            for wait in (0.0, 2.5):       # reads go on, also after the shard tried to reopen
                time.sleep(wait)
                keys = sorted(acked)
                assert cl.mget(keys) == [acked[k] for k in keys]
                with pytest.raises(errors.StorageError):
                    cl.set(key, b"still full")
            os.unlink(filler)
            deadline = time.monotonic() + 15
            while True:
                try:
                    cl.set(key, b"after")
                    acked[key] = b"after"
                    break
                except errors.StorageError:
                    assert time.monotonic() < deadline, "writes did not resume\n" + c.log()
                    time.sleep(0.2)
            resumed = time.monotonic() - (deadline - 15)
            for i in range(50):
                cl.set("post:%d" % i, b"q%d" % i)
                acked[b"post:%d" % i] = b"q%d" % i
            # again, with space back at once: a write right after a torn
            # append must not land behind it in the same log
            for rnd in range(3):
                _fill(filler, 0)
                for i in range(2000):
                    key = b"again:%d:%d" % (rnd, i)
                    try:
                        cl.set(key, value)
                        acked[key] = value
                    except errors.StorageError:
                        break
                os.unlink(filler)
                for i in range(100):
                    try:
                        cl.set(key, b"back")
                        acked[key] = b"back"
                        break
                    except errors.StorageError:
                        time.sleep(0.05)
        assert c.stop() == 0
        c.start()
        with c.client() as cl:
            keys = sorted(acked)
            assert cl.mget(keys) == [acked[k] for k in keys]
        print("\n[catalogue 5] disk full after %d writes: %s; reads went on; writes resumed "
              "%.1fs after space returned" % (written, exc, resumed))
    finally:
        if c.proc is not None:
            c.stop()
        subprocess.run(["umount", "-l", c.data], capture_output=True, timeout=30)
