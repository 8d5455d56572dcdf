"""The data commands of ``flin``: get, set, del, exists, mget, mset, incr,
decr, expire, persist, ttl, scan; each is a thin door to one ``Client`` method.
Keys and values are the bytes given on the command line (``BYTES``, UTF-8 or
not); values are printed as raw bytes."""
from __future__ import annotations

import sys

import click

from ..client import Client
from ..protocol import INT64_MAX, INT64_MIN, MAX_TTL_MS
from .common import (
    BYTES, EXIT_NOT_FOUND, Seconds, endpoint_opt, out, replica_opt, run_client, shown,
    timeout_opt,
)

_ttl = click.option("--ttl", type=Seconds(0, MAX_TTL_MS / 1000, min_open=True),
                    help="Expire after this many seconds (at most 100 years).")
_by = click.argument("by", default=1, type=click.IntRange(INT64_MIN, INT64_MAX))


@click.command()
@endpoint_opt
@timeout_opt
@replica_opt
@click.argument("key", type=BYTES)
def get(endpoint: str, timeout: float, key: bytes) -> None:
    """Print KEY's value (exit 1 if it does not exist)."""
    value = run_client(endpoint, timeout, lambda c: c.get(key))
    if value is None:
        click.echo("flin: %s: not found" % shown(key), err=True)
        sys.exit(EXIT_NOT_FOUND)
    out(value)


@click.command("set")
@endpoint_opt
@timeout_opt
@_ttl
@click.option("--nx", is_flag=True, help="Only if KEY does not exist.")
@click.option("--xx", is_flag=True, help="Only if KEY exists.")
@click.argument("key", type=BYTES)
@click.argument("value", type=BYTES)
def set_(endpoint: str, timeout: float, ttl: float | None, nx: bool, xx: bool,
         key: bytes, value: bytes) -> None:
    """Set KEY to VALUE."""
    if nx and xx:
        raise click.UsageError("--nx and --xx exclude each other")
    wrote = run_client(endpoint, timeout, lambda c: c.set(key, value, ttl=ttl, nx=nx, xx=xx))
    click.echo("OK" if wrote is None or wrote else "not set")


@click.command("del")
@endpoint_opt
@timeout_opt
@click.argument("keys", nargs=-1, required=True, type=BYTES)
def del_(endpoint: str, timeout: float, keys: tuple[bytes, ...]) -> None:
    """Delete KEYS; print how many existed."""
    click.echo(run_client(endpoint, timeout, lambda c: c.delete(*keys)))


@click.command()
@endpoint_opt
@timeout_opt
@replica_opt
@click.argument("key", type=BYTES)
def exists(endpoint: str, timeout: float, key: bytes) -> None:
    """Print 1 if KEY exists, else 0."""
    click.echo(int(run_client(endpoint, timeout, lambda c: c.exists(key))))


@click.command()
@endpoint_opt
@timeout_opt
@replica_opt
@click.argument("keys", nargs=-1, required=True, type=BYTES)
def mget(endpoint: str, timeout: float, keys: tuple[bytes, ...]) -> None:
    """Print each KEY's value on its own line ("(nil)" if missing)."""
    for v in run_client(endpoint, timeout, lambda c: c.mget(keys)):
        out(b"(nil)" if v is None else v)


@click.command()
@endpoint_opt
@timeout_opt
@_ttl
@click.argument("pairs", nargs=-1, required=True, type=BYTES)
def mset(endpoint: str, timeout: float, ttl: float | None, pairs: tuple[bytes, ...]) -> None:
    """Set KEY VALUE [KEY VALUE ...]."""
    if len(pairs) % 2:
        raise click.UsageError("mset takes KEY VALUE pairs")
    run_client(endpoint, timeout, lambda c: c.mset(list(zip(pairs[::2], pairs[1::2])), ttl=ttl))
    click.echo("OK")


@click.command()
@endpoint_opt
@timeout_opt
@click.argument("key", type=BYTES)
@_by
def incr(endpoint: str, timeout: float, key: bytes, by: int) -> None:
    """Add BY (default 1) to the integer at KEY; print the result."""
    click.echo(run_client(endpoint, timeout, lambda c: c.incr(key, by)))


@click.command()
@endpoint_opt
@timeout_opt
@click.argument("key", type=BYTES)
@_by
def decr(endpoint: str, timeout: float, key: bytes, by: int) -> None:
    """Subtract BY (default 1) from the integer at KEY; print the result."""
    click.echo(run_client(endpoint, timeout, lambda c: c.decr(key, by)))


@click.command()
@endpoint_opt
@timeout_opt
@click.argument("key", type=BYTES)
@click.argument("seconds", type=Seconds(max=MAX_TTL_MS / 1000))
def expire(endpoint: str, timeout: float, key: bytes, seconds: float) -> None:
    """Expire KEY in SECONDS; print 1 if it exists, else 0."""
    click.echo(int(run_client(endpoint, timeout, lambda c: c.expire(key, seconds))))


@click.command()
@endpoint_opt
@timeout_opt
@click.argument("key", type=BYTES)
def persist(endpoint: str, timeout: float, key: bytes) -> None:
    """Remove KEY's expiry; print 1 if it had one."""
    click.echo(int(run_client(endpoint, timeout, lambda c: c.persist(key))))


@click.command()
@endpoint_opt
@timeout_opt
@replica_opt
@click.argument("key", type=BYTES)
def ttl(endpoint: str, timeout: float, key: bytes) -> None:
    """Print KEY's seconds to live (-1 no expiry, -2 no such key)."""
    click.echo(run_client(endpoint, timeout, lambda c: c.ttl(key)))


@click.command()
@endpoint_opt
@timeout_opt
@click.argument("prefix", default="", type=BYTES)
@click.option("--values", is_flag=True, help="Print KEY<TAB>VALUE lines.")
@click.option("--limit", type=click.IntRange(1), help="Stop after this many keys (default: all).")
@click.option("--page", default=1000, show_default=True, type=click.IntRange(1, 10_000))
def scan(endpoint: str, timeout: float, prefix: bytes, values: bool, limit: int | None, page: int) -> None:
    """Stream the keys starting with PREFIX in ascending order."""
    def walk(c: Client) -> None:
        n = 0
        for item in c.scan_iter(prefix, values=values, page=page):
            out(item[0] + b"\t" + item[1] if values else item)
            n += 1
            if limit is not None and n >= limit:
                return
    run_client(endpoint, timeout, walk)


COMMANDS = [get, set_, del_, exists, mget, mset, incr, decr, expire, persist, ttl, scan]
