"""``flin bench``: the door to the perf harness (``perf/``, installed as ``flin_perf``)."""
from __future__ import annotations

import sys
from typing import Any

import click

from .common import EXIT_SERVER, EXIT_USAGE, Routers


@click.command()
@click.option("--shards", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Shards of the cluster the bench starts (ignored with --endpoint).")
@click.option("--routers", default="1", show_default=True,
              help="Routers of the cluster the bench starts: a count or auto "
                   "(ignored with --endpoint; the clients spread over them).")
@click.option("--client", default="sync", show_default=True,
              type=click.Choice(["sync", "asyncio", "uvloop"]),
              help="The Flin load: sync (one Client per process, requests submitted in "
                   "frames by hand), asyncio (flin.asyncio.Client, one coroutine per "
                   "worker and in-flight request, awaiting its calls) or the same on "
                   "uvloop (needs uvloop).")
@click.option("--endpoint", "-e", default=None,
              help="Bench a cluster that is already up instead of starting one.")
@click.option("--workers", default=64, show_default=True, type=click.IntRange(1),
              help="Concurrent workers (over all load processes).")
@click.option("--value-size", default=1024, show_default=True, type=click.IntRange(1),
              help="Bytes per value.")
@click.option("--duration", default=3.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per phase.")
@click.option("--keys", default=1_000_000, show_default=True, type=click.IntRange(1),
              help="Key space.")
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1),
              help="Requests in flight per worker.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 100_000),
              help="Keys per MSET/MGET request (1 = single-key ops).")
@click.option("--workload", "workloads", multiple=True,
              type=click.Choice(["write", "read", "mixed", "zipf", "scan", "incr"]),
              help="Phase to run (repeatable; default: write, then read). Reading "
                   "workloads get a write phase first.")
@click.option("--processes", type=click.IntRange(1),
              help="Load-generator processes [default: cores, at most 4].")
@click.option("--baseline", "baselines", multiple=True, type=click.Choice(["engine", "redis"]),
              help="Also run the workload on plyvel alone / a local redis-server (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write every figure, the configuration and the machine as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw latency distribution and throughput over time (PNG, needs flin[perf]).")
@click.option("--seed", default=1, show_default=True, help="Seed of the key choices.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def bench(**options: Any) -> None:
    """Measure throughput and per-request latency (the harness is in perf/)."""
    try:
        from flin_perf.bench import BenchConfig, BenchError, run
    except ImportError as exc:
        click.echo("flin: bench needs the perf harness and its extras "
                   "(pip install -e '.[perf]'): %s" % exc, err=True)
        sys.exit(EXIT_USAGE)
    options["workloads"] = tuple(options["workloads"]) or ("write", "read")
    options["baselines"] = tuple(options["baselines"])
    try:
        options["routers"] = Routers().convert(options["routers"], None, None)
    except click.BadParameter as exc:
        raise click.UsageError("--routers: %s" % exc.message)
    if options["processes"] is None:
        del options["processes"]
    try:
        cfg = BenchConfig(**options)
        cfg.check()
    except ValueError as exc:
        raise click.UsageError(str(exc))
    try:
        run(cfg)
    except BenchError as exc:
        click.echo("flin: bench failed: %s" % exc, err=True)
        sys.exit(EXIT_SERVER)
