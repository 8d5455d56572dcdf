"""The client's two faces stay in step: every command a ``Client`` runs, a
``Pipeline`` can queue, with the same parameters (no server needed)."""
from __future__ import annotations

import inspect

import pytest

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


def test_the_asyncio_client_mirrors_the_client_awaitably():
    import flin.asyncio
    AClient, APipeline = flin.asyncio.Client, flin.asyncio.Pipeline
    sync = set(_public(Client)) - {"submit", "submit_many", "receive", "receive_all", "collect"}
    missing = sync - set(_public(AClient))
    assert not missing, "flin.asyncio.Client lacks %s" % sorted(missing)
    for name in sync:
        fn = getattr(AClient, name)
        assert fn.__doc__, "flin.asyncio.Client.%s has no docstring" % name
        assert list(inspect.signature(fn).parameters) == \
            list(inspect.signature(getattr(Client, name)).parameters), name
        if name == "scan_iter":
            assert inspect.isasyncgenfunction(fn)
        elif name != "pipeline":
            assert inspect.iscoroutinefunction(fn), name
    assert set(_public(Pipeline)) == set(_public(APipeline))
    assert inspect.iscoroutinefunction(APipeline.execute)
    p = APipeline(client=None)  # type: ignore[arg-type]  (nothing is sent here)
    assert p.get("a").decr("n", 2) is p and p._cmds[1][:3] == [7, b"n", -2]   # the shared builders


def test_the_asyncio_client_refuses_what_the_client_refuses():
    import flin.asyncio
    from flin import errors
    for bad in (0, -1, float("nan"), True, "5"):
        with pytest.raises(errors.InvalidArgument):
            flin.asyncio.Client(timeout=bad)
    import asyncio
    db = flin.asyncio.Client("ipc:///nonexistent/none.sock", timeout=0.2)
    for call in (lambda: db.set("k", b"v", nx=True, xx=True), lambda: db.incr("n", 1.5),
                 lambda: db.expire("k", float("inf"))):
        with pytest.raises(errors.InvalidArgument):   # by the shared builder, before sending
            asyncio.run(call())
    assert db._mux.sock is None                       # nothing was sent: no socket opened


def test_importing_flin_does_not_load_asyncio_or_the_async_client():
    import subprocess
    import sys
    code = "import sys, flin; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd="/").stdout.split()
    assert "flin.asyncio" not in loaded and "flin.client.aio" not in loaded and "zmq.asyncio" not in loaded
