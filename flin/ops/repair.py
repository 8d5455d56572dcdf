"""``flin repair``: LevelDB's RepairDB on the shards of a stopped cluster,
after cutting each write-ahead log at its first bad record (``logsurgery``)."""
from __future__ import annotations

from typing import Iterator

import plyvel

from ..config import Config
from ..supervisor.datadir import (
    REPAIR, StartError, load_manifest, missing_shards_message, shard_present, take,
)
from .logsurgery import truncate_at_corruption


class RepairError(Exception):
    """Repair cannot run; the message says why."""


def repair(cfg: Config, shard: int | None = None) -> Iterator[str]:
    """Run LevelDB's RepairDB on one shard or all; yields a line per shard.
    Refused while any process of a cluster holds the folder's owner lock,
    which repair holds itself meanwhile, so that no start races it."""
    manifest = load_manifest(cfg)
    if manifest is None:
        raise RepairError("%s has no flin.json: not a Flin data folder" % cfg.data)
    try:
        owner = take(cfg, REPAIR, "repair it while it runs (`flin stop` it first)")
    except StartError as exc:
        raise RepairError(str(exc)) from None
    try:
        yield from _repair(cfg, manifest, shard)
    finally:
        owner.release()


def _repair(cfg: Config, manifest: dict, shard: int | None) -> Iterator[str]:
    shards = range(manifest["shards"]) if shard is None else [shard]
    for s in shards:
        if not 0 <= s < manifest["shards"]:
            raise RepairError("shard %d does not exist (the folder has %d)" % (s, manifest["shards"]))
        path = cfg.shard_dir(s)
        if not shard_present(cfg, s):   # RepairDB would make it a new, empty shard
            raise RepairError(missing_shards_message(cfg, [s]) + " Repair does not "
                              "re-create a lost shard.")
        for note in truncate_at_corruption(path):
            yield "shard %d: %s" % (s, note)
        plyvel.repair_db(path, paranoid_checks=True)
        db = plyvel.DB(path, paranoid_checks=True)
        db.close()
        yield "shard %d: repaired, opens cleanly" % s
