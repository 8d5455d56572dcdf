"""CLI inputs that used to end in a traceback or the wrong exit code, through
a real ``python -m flin`` subprocess against a real cluster: keys and values
that are not UTF-8 (any bytes work), numbers out of range or not finite, a
malformed endpoint, and ``flin stop`` on a supervisor that does not stop.
Each is one line on stderr and the documented exit code (README, "The CLI")."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cluster.test_cli import NOT_FOUND, OK, SERVER, USAGE, _env
from tests.support.cluster import ROOT

INT64_MAX = 2 ** 63 - 1


def flin(*args, endpoint: str | bytes | None = None, timeout: float | None = None,
         check_rc: int | None = None) -> subprocess.CompletedProcess:
    """``python -m flin COMMAND [--endpoint E] [--timeout T] ARGS...`` (the options
    before the arguments, which may hold ``--``); args may be bytes."""
    opts: list = (["--endpoint", endpoint] if endpoint else []) + (["--timeout", str(timeout)] if timeout else [])
    p = subprocess.run([sys.executable, "-m", "flin", args[0], *opts, *args[1:]],
                       capture_output=True, cwd=ROOT, env=_env(), timeout=60)
    if check_rc is not None:
        assert p.returncode == check_rc, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def ep(shared_cluster):
    return shared_cluster.endpoint


def one_line(p, rc: int, says: bytes = b"") -> bytes:
    """``p`` failed with ``rc`` and one line that names the problem, no traceback."""
    assert p.returncode == rc, (p.returncode, p.stdout, p.stderr)
    assert b"Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith((b"flin: ", b"Error: "))]
    assert len(lines) == 1 and says in lines[0], p.stderr
    return lines[0]


# -- keys and values are bytes ------------------------------------------------------
KEY, VALUE = b"cli-bin:\xff\xfe\x80", b"\x80value\xff"


def test_set_and_get_of_bytes_that_are_not_utf8(ep, client):
    assert flin(b"set", KEY, VALUE, endpoint=ep, check_rc=OK).stdout == b"OK\n"
    assert client.get(KEY) == VALUE
    assert flin(b"get", KEY, endpoint=ep, check_rc=OK).stdout == VALUE + b"\n"
    assert flin(b"exists", KEY, endpoint=ep, check_rc=OK).stdout == b"1\n"
    assert flin(b"scan", b"cli-bin:\xff", endpoint=ep, check_rc=OK).stdout == KEY + b"\n"


def test_every_key_command_takes_bytes(ep, client):
    k1, k2 = b"cli-bin:m\xff1", b"cli-bin:m\xff2"
    flin(b"mset", k1, b"\xfe1", k2, b"\xfe2", endpoint=ep, check_rc=OK)
    assert client.mget([k1, k2]) == [b"\xfe1", b"\xfe2"]
    assert flin(b"mget", k1, k2, endpoint=ep, check_rc=OK).stdout == b"\xfe1\n\xfe2\n"
    assert flin(b"incr", b"cli-bin:n\xff", b"5", endpoint=ep, check_rc=OK).stdout == b"5\n"
    assert flin(b"decr", b"cli-bin:n\xff", endpoint=ep, check_rc=OK).stdout == b"4\n"
    assert flin(b"expire", k1, b"100", endpoint=ep, check_rc=OK).stdout == b"1\n"
    assert 98 < float(flin(b"ttl", k1, endpoint=ep, check_rc=OK).stdout) <= 100
    assert flin(b"persist", k1, endpoint=ep, check_rc=OK).stdout == b"1\n"
    assert flin(b"del", k1, k2, endpoint=ep, check_rc=OK).stdout == b"2\n"
    assert client.mget([k1, k2]) == [None, None]


def test_a_missing_key_that_is_not_utf8_is_not_found(ep):
    line = one_line(flin(b"get", b"cli-bin:absent\xff", endpoint=ep), NOT_FOUND, b"not found")
    assert b"\\xff" in line                    # named, escaped


# -- numbers ------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["set", "--ttl", "1e30", "cli-n:k", "v"], b"--ttl"),
    (["set", "--ttl", "nan", "cli-n:k", "v"], b"--ttl"),
    (["set", "--ttl", "inf", "cli-n:k", "v"], b"--ttl"),
    (["mset", "--ttl", "nan", "cli-n:k", "v"], b"--ttl"),
    (["mset", "--ttl", "1e30", "cli-n:k", "v"], b"--ttl"),
    (["expire", "cli-n:k", "nan"], b"SECONDS"),
    (["expire", "cli-n:k", "inf"], b"SECONDS"),
    (["expire", "cli-n:k", "1e30"], b"SECONDS"),
    (["expire", "cli-n:k", "--", "-inf"], b"SECONDS"),
    (["incr", "cli-n:k", str(2 ** 64)], b"BY"),
    (["incr", "cli-n:k", str(2 ** 63)], b"BY"),
    (["incr", "cli-n:k", "--", str(-2 ** 63 - 1)], b"BY"),
    (["decr", "cli-n:k", "--", str(-2 ** 63)], b"by"),     # -BY does not fit in 64 bits
    (["get", "cli-n:k", "--timeout", "nan"], b"--timeout"),
    (["get", "cli-n:k", "--timeout", "1e308"], b"timeout"),   # past what libzmq can wait
])
def test_a_number_out_of_range_or_not_finite_is_a_usage_error(ep, client, args, says):
    client.set(b"cli-n:k", b"7")
    one_line(flin(*args, endpoint=ep), USAGE, says)
    assert client.get(b"cli-n:k") == b"7" and client.ttl(b"cli-n:k") == -1   # nothing sent


def test_the_extremes_that_fit_still_work(ep, client):
    flin("incr", "cli-n:max", str(INT64_MAX), endpoint=ep, check_rc=OK)
    assert client.get(b"cli-n:max") == b"%d" % INT64_MAX
    assert flin("decr", "cli-n:min", str(INT64_MAX), endpoint=ep, check_rc=OK).stdout == \
        b"%d\n" % -INT64_MAX
    assert flin("decr", "cli-n:min", endpoint=ep, check_rc=OK).stdout == b"%d\n" % -2 ** 63
    flin("set", "--ttl", str(100 * 365 * 86400), "cli-n:long", "v", endpoint=ep, check_rc=OK)
    assert client.ttl(b"cli-n:long") > 99 * 365 * 86400
    assert flin("expire", "cli-n:long", "--", "-1", endpoint=ep, check_rc=OK).stdout == b"1\n"
    assert client.get(b"cli-n:long") is None


# -- endpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["bogus://x", "tcp://", "no-scheme", b"ipc:///tmp/\xff"])
def test_a_malformed_endpoint_is_a_usage_error(endpoint):
    line = one_line(flin("get", "k", endpoint=endpoint, timeout=1), USAGE, b"endpoint")
    assert (endpoint if type(endpoint) is str else "ipc:///tmp/").encode() in line


# -- stop ---------------------------------------------------------------------------
def test_stop_of_a_supervisor_that_does_not_stop_is_one_line_and_exit_4(cluster):
    sup = cluster.proc.pid
    os.kill(sup, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        p = flin("stop", "--data", cluster.data, "--wait", "1")
        assert time.monotonic() - t0 < 10
        one_line(p, SERVER, b"did not stop within 1s")
        one_line(flin("stop", "--data", cluster.data, "--wait", "nan"), USAGE, b"--wait")
    finally:
        os.kill(sup, signal.SIGCONT)           # the SIGTERM it holds then stops it
    assert cluster.proc.wait(30) == 0


# -- start's sizes ------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--read-cache-mb", "nan"), ("--read-cache-mb", "inf"), ("--write-buffer-mb", "nan"),
    ("--write-buffer-mb", "1e30"), ("--block-cache-mb", "inf"), ("--block-cache-mb", "-1"),
])
def test_start_refuses_a_size_that_is_not_a_finite_number_of_mib(tmp_short, option, value):
    data = os.path.join(tmp_short, "d")
    p = subprocess.run([sys.executable, "-m", "flin", "start", "--data", data, "--shards", "1",
                        "--bind", "ipc://" + os.path.join(tmp_short, "s"), option, value],
                       capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == USAGE and option.encode() in p.stderr, p
    assert b"Traceback" not in p.stderr and not os.path.exists(data)   # nothing started
