"""Fixtures that start a real Flin cluster (``tests.support.cluster``) and
tear it down, failing if any process is left behind."""
from __future__ import annotations

import os
import tempfile

import pytest

from tests.support.cluster import make_cluster

# Every cluster a test starts speaks the Redis protocol only if the test asks
# for it (--resp HOST:PORT): the default port would clash between tests.
os.environ["FLIN_RESP"] = "off"


@pytest.fixture
def tmp_short():
    """A temporary folder with a short path (ipc paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        yield d


@pytest.fixture
def cluster(tmp_short):
    """A fresh 8-shard cluster for one test."""
    c = make_cluster(tmp_short).start()
    yield c
    if c.proc is not None:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def shared_cluster():
    """One 8-shard cluster shared by a module's tests (use distinct keys)."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d).start()
        yield c
        if c.proc is not None:
            assert c.stop() == 0


@pytest.fixture
def client(shared_cluster):
    with shared_cluster.client() as c:
        yield c
