"""``scripts/cluster-demo``: three nodes and their etcd in one command, then stopped."""
from __future__ import annotations

import os
import subprocess

import flin
from tests.support.cluster import ROOT


def _running_in(folder: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if folder.encode() in f.read():
                        pids.append(int(pid))
            except OSError:
                continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def test_the_demo_starts_three_nodes_that_serve_and_stops_them(tmp_short):
    demo = os.path.join(tmp_short, "demo")
    env = {**os.environ, "FLIN_DEMO": demo, "FLIN_EXTRAS": "test"}
    script = os.path.join(ROOT, "scripts", "cluster-demo")
    try:
        got = subprocess.run([script], capture_output=True, text=True, env=env, timeout=180)
        assert got.returncode == 0, got.stdout + got.stderr
        assert "3/3 nodes alive" in got.stdout
        with flin.Client("tcp://127.0.0.2:7700", timeout=10) as c:
            assert len(c.routers()) == 3
            c.set(b"greeting", b"hello")
        with flin.Client("tcp://127.0.0.4:7700", timeout=10, discover=False) as c:
            assert c.get(b"greeting") == b"hello"
    finally:
        stop = subprocess.run([script, "stop"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert stop.returncode == 0, stop.stderr
    left = _running_in(demo)
    assert not left, "the demo left processes behind: %s" % [_cmdline(p) for p in left]
