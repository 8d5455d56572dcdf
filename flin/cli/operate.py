"""The operating commands of ``flin``: stats, backup, restore, compact, repair."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..client import Client
from ..config import MAX_SHARDS, Config
from .common import EXIT_USAGE, Seconds, data_opt, endpoint_opt, run_client, timeout_opt
from .statsview import render


_COMPACT_WAIT_S = 3600     # longest `flin compact` waits for the shards to finish


class _NoBar:
    """Stands in for a progress bar that is not shown."""

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: int, item: Any = None) -> None:
        pass


def _bar(show: bool, length: int, label: str) -> Any:
    if not show:
        return _NoBar()
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True,
                             item_show_func=lambda x: x)


def _mb(n: float) -> float:
    return n / 1e6


@click.command()
@endpoint_opt
@timeout_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per refresh).")
@click.option("--watch", is_flag=True,
              help="Refresh every --interval seconds until Ctrl-C; rates and latencies "
                   "then cover each interval.")
@click.option("--interval", default=2.0, show_default=True, type=Seconds(0.1),
              help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(1), help="With --watch: stop after this many refreshes.")
@click.option("--leveldb", is_flag=True, help="Also print each shard's leveldb.stats.")
def stats(endpoint: str, timeout: float, as_json: bool, watch: bool, interval: float,
          count: int | None, leveldb: bool) -> None:
    """Counters of the router and every shard; latency percentiles; hot shards."""
    def show(c: Client) -> None:
        prev, prev_t, shown = None, 0.0, 0
        while True:
            st = c.stats()
            now = time.monotonic()
            if as_json:
                click.echo(json.dumps(st))
            else:
                if watch and sys.stdout.isatty():
                    click.clear()
                text = render(st, prev, now - prev_t if prev else None)
                if watch:
                    text = time.strftime("%H:%M:%S ") + text
                click.echo(text)
                if leveldb:
                    for s in st["shards"]:
                        if s.get("alive"):
                            click.echo("\nshard %d leveldb.stats:\n%s" % (s["id"], s["leveldb_stats"]))
                if watch:
                    click.echo("")
            shown += 1
            if not watch or (count is not None and shown >= count):
                return
            prev, prev_t = st, now
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
    try:
        run_client(endpoint, timeout, show)
    except KeyboardInterrupt:
        pass


@click.command()
@endpoint_opt
@click.option("--timeout", default=30.0, show_default=True, envvar="FLIN_TIMEOUT",
              help="Seconds to wait for each round of pages.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def backup(endpoint: str, timeout: float, dest: str, progress: bool | None) -> None:
    """Copy a running cluster into DEST (a new folder): a consistent snapshot
    of every shard, taken when the backup starts, while the cluster serves."""
    from ..ops.backup import BackupError, backup as run_backup
    show = sys.stderr.isatty() if progress is None else progress

    def go(c: Client) -> dict:
        shards = len(c.status()["shards"])
        with _bar(show, shards, "backup") as bar:
            seen = [0]

            def step(done: int, entries: int, size: int) -> None:
                bar.update(done - seen[0], "%d entries, %.1f MB" % (entries, _mb(size)))
                seen[0] = done
            return run_backup(c, dest, step)
    try:
        m = run_client(endpoint, timeout, go)
    except BackupError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    secs = max(m["seconds"], 1e-9)
    click.echo("backup: %d shards, %d keys (%d entries), %.1f MB in %.2fs: %.0f keys/s, "
               "%.1f MB/s -> %s" % (m["shards"], m["data_keys"], m["entries"], _mb(m["bytes"]),
                                    secs, m["data_keys"] / secs, _mb(m["bytes"]) / secs, dest))


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@data_opt
@click.option("--shards", type=click.IntRange(1, MAX_SHARDS),
              help="Restore into this many shards instead of the backup's (each key goes "
                   "where the new ring puts it).")
@click.option("--jobs", type=click.IntRange(1), help="Shards written at once [default: cores, at most 8].")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def restore(src: str, data: str, shards: int | None, jobs: int | None,
            progress: bool | None) -> None:
    """Rebuild the data folder DATA (absent or empty) from the backup in SRC,
    verifying every file's checksum, into the backup's shard count or
    --shards. Start a cluster on it afterwards."""
    from ..ops.restore import BackupError, read_manifest, restore as run_restore
    show = sys.stderr.isatty() if progress is None else progress
    t0 = time.monotonic()
    try:
        total = shards or read_manifest(src)["shards"]
        with _bar(show, total, "restore") as bar:
            m = run_restore(src, data, lambda done, entries, size: bar.update(
                1, "%d entries" % entries), jobs, shards)
    except BackupError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    secs = max(time.monotonic() - t0, 1e-9)
    click.echo("restore: %d shards, %d keys (%d entries), %.1f MB in %.2fs: %.0f keys/s, "
               "%.1f MB/s -> %s" % (m["shards"], m["data_keys"], m["entries"], _mb(m["bytes"]),
                                    secs, m["data_keys"] / secs, _mb(m["bytes"]) / secs, data))


@click.command()
@endpoint_opt
@timeout_opt
@click.option("--shard", type=click.IntRange(0), help="Compact only this shard (default: all).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the compactions to finish.")
def compact(endpoint: str, timeout: float, shard: int | None, wait: bool) -> None:
    """Run LevelDB compaction online (a background thread in each shard)."""
    def go(c: Client) -> Any:
        before = {s["id"]: s for s in c.stats()["shards"] if s.get("alive")}
        targets = [shard] if shard is not None else sorted(before)
        started = c.compact(shard)
        if not wait:
            return "compaction started on %d shard(s)" % len(targets)
        t0 = time.monotonic()
        while True:
            now = {s["id"]: s for s in c.stats()["shards"] if s.get("alive")}
            done = [s for s in targets if s in now and not now[s]["compaction"]["running"]
                    and now[s]["compaction"]["runs"] > before.get(s, now[s])["compaction"]["runs"]]
            if len(done) == len(targets):
                break
            # a shard that died or restarted meanwhile lost its compaction thread
            lost = [s for s in targets if s not in now or s in before
                    and now[s].get("pid") != before[s].get("pid")]
            if lost or time.monotonic() - t0 > _COMPACT_WAIT_S:
                raise click.ClickException(
                    "compaction did not finish on shard(s) %s (%s); see flin stats"
                    % (lost or sorted(set(targets) - set(done)),
                       "restarted or down" if lost else "still running after %ds" % _COMPACT_WAIT_S))
            time.sleep(0.2)
        errs = [(s, now[s]["compaction"]["error"]) for s in done if now[s]["compaction"].get("error")]
        for s, e in errs:
            click.echo("shard %d: compaction failed: %s" % (s, e), err=True)
        was = sum(now[s]["compaction"]["bytes_before"] for s in done)
        left = sum(now[s]["compaction"]["bytes_after"] for s in done)
        return ("compacted %d shard(s) in %.2fs: %.1f MB -> %.1f MB on disk%s"
                % (len(done), time.monotonic() - t0, _mb(was), _mb(left),
                   "" if started is not False else " (one was already running)"))
    click.echo(run_client(endpoint, timeout, go))


@click.command()
@data_opt
@click.option("--shard", type=click.IntRange(0), help="Repair only this shard (default: all).")
def repair(data: str, shard: int | None) -> None:
    """Run LevelDB's repair on the shards of a STOPPED cluster."""
    from ..ops.repair import RepairError, repair as repair_shards
    try:
        for line in repair_shards(Config(data=data), shard):
            click.echo(line)
    except RepairError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_USAGE)


COMMANDS = [stats, backup, restore, compact, repair]
