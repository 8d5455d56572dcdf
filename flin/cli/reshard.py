"""``flin reshard --shards M``: change the shard count of a running cluster.

It asks the supervisor serving ``--data`` (``supervisor.reshard.ask``) and
follows ``run/reshard.json``: keys and bytes moved, the rate and the state,
on a progress line when stderr is a terminal (with the time left, from the
sources' key counts); at the end one line with what
moved, how long it took and how long writes were held at the switch.
Exit 0 when done; 1 if it failed and was rolled back, or was refused (the
message says why); 3 if no cluster runs there.
"""
from __future__ import annotations

import sys
import time

import click

from ..config import MAX_SHARDS, Config
from ..supervisor.datadir import running_pid
from .common import EXIT_UNREACHABLE, data_opt

ASK_WAIT_S = 30.0         # for the supervisor to take the request


@click.command()
@data_opt
@click.option("--shards", required=True, type=click.IntRange(1, MAX_SHARDS),
              help="The shard count to move to.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None,
              help="Move at most this many MB/s [default: as fast as it goes].")
@click.option("--pause/--no-pause", default=True, show_default=True,
              help="Hold new requests at the switch (tens of ms) until nothing routed by "
                   "the old ring is in flight. --no-pause: only writes to moving keys wait "
                   "(refused by their old shard and re-routed until the switch); a command "
                   "over several shards may then be answered Moved, which clients retry.")
@click.option("--progress/--no-progress", default=None,
              help="Progress line on stderr [default: when stderr is a terminal].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the reshard to its end.")
def reshard(data: str, shards: int, rate: float | None, pause: bool, progress: bool | None,
            wait: bool) -> None:
    """Move a running cluster to SHARDS shards: only the keys whose owner
    changes move (with their expiry and request ids); reads and writes go on,
    and writes wait a moment at the switch. `flin status` shows it too."""
    from ..supervisor import reshard as rs
    from ..supervisor.datadir import StartError
    cfg = Config(data=data)
    try:
        rid = rs.ask(cfg, shards, rate, pause)
    except StartError as exc:
        click.echo("flin: %s" % exc, err=True)
        sys.exit(EXIT_UNREACHABLE)
    show = sys.stderr.isatty() if progress is None else progress
    seen = None
    asked_at = time.monotonic()
    while True:
        p = rs.progress(cfg)
        state = p.get("state") if p.get("id") == rid else None   # (None: another's file)
        if state in (None, rs.ASKED) and not p.get("waiting") and \
                time.monotonic() - asked_at > ASK_WAIT_S:
            click.echo("flin: the supervisor did not take the request within %.0fs (another "
                       "reshard's request replaced it?)" % ASK_WAIT_S, err=True)
            sys.exit(1)
        if running_pid(cfg) is None:
            click.echo("flin: the cluster on %s stopped; `flin start` settles the reshard "
                       "(rolled back before its commit, finished after)" % data, err=True)
            sys.exit(EXIT_UNREACHABLE)
        if state is None:
            time.sleep(0.05)
            continue
        if state == rs.REFUSED:
            click.echo("flin: reshard refused: %s" % p.get("error"), err=True)
            sys.exit(1)
        if not wait and state != rs.ASKED:
            click.echo("reshard to %d shards started; `flin status` shows it" % shards)
            return
        line = "reshard %s -> %s: %s, %d keys, %.1f MB moved, %.1f MB/s%s" % (
            p.get("from", "?"), shards, state, p.get("keys", 0), p.get("bytes", 0) / 1e6,
            p.get("rate_mb_s", 0.0),
            ", ~%.0fs left" % p["left_s"] if p.get("left_s") is not None else "")
        if p.get("waiting"):
            line = "reshard -> %s: waiting for shard %s to clean up after the last one" % (
                shards, p["waiting"][0])
        if show and line != seen:
            click.echo("\r" + line.ljust(78), nl=False, err=True)
            seen = line
        if state in (rs.DONE, rs.FAILED):
            break
        time.sleep(0.2)
    if show:
        click.echo("", err=True)
    if state == rs.FAILED:
        click.echo("flin: the reshard failed and was rolled back: %s" % p.get("error"), err=True)
        sys.exit(1)
    click.echo("reshard: %d -> %d shards, %d keys (%.1f MB) moved in %.2fs (%.1f MB/s); "
               "writes held %.0f ms at the switch"
               % (p["from"], shards, p["keys"], p["bytes"] / 1e6, p.get("seconds", 0),
                  p.get("rate_mb_s", 0.0), p.get("pause_ms", 0)))


COMMANDS = [reshard]
