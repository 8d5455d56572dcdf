"""``flin backup``: a consistent copy of a running cluster.

``backup(client, dest)`` opens a LevelDB snapshot on every shard first (in one
request, so the cut is taken when the backup starts: every write acknowledged
before then is in it), then pages each snapshot's raw entries through the
router (``SNAPSHOT_READ``, all shards in one request per round) into
``DEST/shard-NN.dump`` (``dumpfile.py``), while the cluster keeps serving.
``manifest.json`` is written last, sealed with its own checksum: a folder
without it is not a backup.
"""
from __future__ import annotations

import os
import time
from typing import Any

from .. import errors
from ..protocol import (
    MAX_SCAN_LIMIT, SHARD, SNAPSHOT_CLOSE, SNAPSHOT_OPEN, SNAPSHOT_READ, ErrorReply,
)
from ..supervisor.datadir import FORMAT_VERSION, write_json
from .dumpfile import (
    MANIFEST, MANIFEST_FORMAT, BackupError, DumpWriter, Progress, dump_name, not_empty, sealed,
)

_ROUND_BYTES = 48 << 20    # bytes asked of all shards in one round (one reply frame)
_MIN_PAGE_BYTES = 256 << 10


def _check(results: list, what: str) -> list:
    for r in results:
        if type(r) is ErrorReply:
            raise errors.error_for_code(r.code, "%s: %s" % (what, r.message))
    return results


def backup(client: Any, dest: str, progress: Progress | None = None,
           page: int = MAX_SCAN_LIMIT) -> dict:
    """Copy the cluster behind ``client`` into the empty folder ``dest``;
    returns the manifest. Raises ``BackupError`` (dest not empty, a shard
    down) or the client's errors; a failed backup leaves no dump behind."""
    if not_empty(dest):
        raise BackupError("%s is not empty; a backup goes into a new folder" % dest)
    st = client.stats()
    down = [s["id"] for s in st["shards"] if not s.get("alive")]
    if down:
        raise BackupError("shards %s do not answer; a backup needs every shard" % down)
    n = len(st["shards"])
    os.makedirs(dest, exist_ok=True)
    t0 = time.monotonic()
    started = time.time()
    opened = client.execute([[SHARD, s, [SNAPSHOT_OPEN]] for s in range(n)])
    sids = {s: r for s, r in enumerate(opened) if type(r) is int}
    dumps: dict[int, DumpWriter] = {}
    files: list[dict | None] = [None] * n
    try:
        _check(opened, "opening the snapshots")
        dumps = {s: DumpWriter(os.path.join(dest, dump_name(s))) for s in range(n)}
        cursor: dict[int, Any] = {s: None for s in range(n)}
        active = list(range(n))
        entries = size = 0
        while active:
            cap = max(_MIN_PAGE_BYTES, _ROUND_BYTES // len(active))
            results = _check(client.execute(
                [[SHARD, s, [SNAPSHOT_READ, sids[s], cursor[s], page, cap]] for s in active]),
                "reading the snapshots")
            still = []
            for s, (flat, last) in zip(active, results):
                dumps[s].write(flat)
                entries += len(flat) // 2
                if last is None:
                    done = {"shard": s, "file": dump_name(s), **dumps[s].finish()}
                    files[s] = done
                    size += done["bytes"]
                else:
                    cursor[s] = last
                    still.append(s)
            active = still
            if progress is not None:
                progress(n - len(active), entries, size + sum(dumps[s].size for s in active))
    except BaseException:
        for d in dumps.values():
            d.f.close()
        for s in range(n):
            try:
                os.unlink(os.path.join(dest, dump_name(s)))
            except FileNotFoundError:
                pass
        raise
    finally:
        try:
            client.execute([[SHARD, s, [SNAPSHOT_CLOSE, sid]] for s, sid in sids.items()], 2.0)
        except errors.FlinError:
            pass  # they expire on their own
    manifest = sealed({
        "kind": "flin-backup", "format": MANIFEST_FORMAT, "data_format": FORMAT_VERSION,
        "shards": n, "ring": st["router"]["ring"], "started": started,
        "seconds": time.monotonic() - t0,
        "entries": sum(f["entries"] for f in files if f),
        "data_keys": sum(f["data_keys"] for f in files if f),
        "bytes": sum(f["bytes"] for f in files if f), "files": files,
    })
    write_json(os.path.join(dest, MANIFEST), manifest)
    return manifest
