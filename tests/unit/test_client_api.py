"""The client's two faces stay in step: every command a ``Client`` runs, a
``Pipeline`` can queue, with the same parameters (no server needed)."""
from __future__ import annotations

import inspect

from flin import Client, Pipeline

# Client methods that are about the connection, not commands
TRANSPORT = {"submit", "submit_many", "receive", "receive_all", "collect", "execute",
             "pipeline", "close", "scan_iter"}


def _public(cls: type) -> dict:
    """Public callables of ``cls`` and its bases (not ``object``'s)."""
    out: dict = {}
    for base in reversed(cls.__mro__[:-1]):
        out.update((n, f) for n, f in vars(base).items() if callable(f) and not n.startswith("_"))
    return out


def test_every_client_command_can_be_pipelined_with_the_same_parameters():
    commands = set(_public(Client)) - TRANSPORT
    assert {"get", "set", "compact", "snapshot_read"} <= commands
    missing = commands - set(_public(Pipeline))
    assert not missing, "Pipeline lacks %s" % sorted(missing)
    for name in commands:
        ours = list(inspect.signature(getattr(Client, name)).parameters)
        theirs = list(inspect.signature(getattr(Pipeline, name)).parameters)
        assert ours == theirs, name


def test_pipeline_methods_queue_and_return_the_pipeline():
    p = Pipeline(client=None)  # type: ignore[arg-type]  (nothing is sent here)
    assert p.get("a").decr("n", 2).snapshot_close(0, 7) is p
    assert len(p) == 3
    assert p._cmds[1][:3] == [7, b"n", -2]          # DECR is INCR by -n, with a uid
