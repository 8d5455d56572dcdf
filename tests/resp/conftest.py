"""A cluster speaking RESP, shared by a module's tests (use distinct keys)."""
from __future__ import annotations

import tempfile

import pytest

from tests.support.resp import resp_cluster


@pytest.fixture(scope="module")
def resp():
    """(the cluster, its RESP port): 8 shards, one router."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c, port = resp_cluster(d, shards=8)
        try:
            yield c, port
        finally:
            assert c.stop() == 0
