"""Fixtures for the many-hosts tests: an etcd and nodes on 127.0.0.x
(``tests.support.hosts``), all stopped at the end."""
from __future__ import annotations

import pytest

from tests.support.hosts import Hosts, have_etcd


@pytest.fixture
def hosts(tmp_short):
    """An etcd of its own, and room for the nodes of cluster ``t``."""
    assert have_etcd(), "etcd is not installed: scripts/test installs etcd-server"
    h = Hosts(tmp_short)
    try:
        yield h
    finally:
        h.close()
