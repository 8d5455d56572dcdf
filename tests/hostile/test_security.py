"""Who may connect (RELIABILITY.md cases 16-18): the bind check, CurveZMQ on
the client endpoint and on the router-worker link, and identity takeover."""
from __future__ import annotations

import dataclasses
import logging
import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import zmq

import flin
from flin import curve, errors, protocol
from flin.config import Config
from flin.router import sockets as router_sockets
from flin.supervisor import bindcheck
from flin.protocol import PING

from tests.support.cluster import ROOT, make_cluster
from tests.support.hostile import RawPeer

FLIN = [sys.executable, "-m", "flin"]


def flin_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*FLIN, *args], cwd=ROOT, capture_output=True, timeout=timeout)


# -- case 17: the bind check --------------------------------------------------------------
@pytest.mark.parametrize("endpoint, local", [
    ("ipc:///tmp/x.sock", True), ("inproc://x", True), ("tcp://127.0.0.1:7700", True),
    ("tcp://127.9.9.9:1", True), ("tcp://[::1]:7700", True), ("tcp://localhost:7700", True),
    ("tcp://0.0.0.0:7700", False), ("tcp://*:7700", False), ("tcp://[::]:7700", False),
    ("tcp://10.1.2.3:7700", False), ("tcp://eth0:7700", False), ("tcp://db.example:7700", False),
    ("udp://127.0.0.1:7700", False), ("pgm://eth0;239.1.1.1:5555", False),
])
def test_is_local(endpoint, local):
    assert bindcheck.is_local(endpoint) is local


def test_default_bind_is_loopback():
    cfg = Config()
    assert bindcheck.is_local(cfg.bind)
    assert bindcheck.check_bind(cfg) == "local"


def test_public_bind_without_keys_is_refused_with_the_way_out():
    with pytest.raises(ValueError) as exc:
        bindcheck.check_bind(Config(bind="tcp://0.0.0.0:7700"))
    msg = str(exc.value)
    assert "refusing to bind tcp://0.0.0.0:7700" in msg
    assert "--curve-secret" in msg and "--authorized-keys" in msg and "flin keygen" in msg
    assert "--insecure" in msg


def test_insecure_overrides_with_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="flin.security"):
        assert bindcheck.check_bind(Config(bind="tcp://0.0.0.0:7700", insecure=True)) == "insecure"
    assert any(r.levelno == logging.WARNING and "INSECURE" in r.getMessage() for r in caplog.records)


def test_public_bind_with_curve_is_allowed(keys, caplog):
    cfg = Config(bind="tcp://0.0.0.0:7700", curve_secret=keys["server_secret"],
                 authorized_keys=keys["authorized"])
    with caplog.at_level(logging.WARNING, logger="flin.security"):
        assert bindcheck.check_bind(cfg) == "curve"      # admitted because of the keys
    assert "INSECURE" not in caplog.text
    # the same bind without the keys is refused: CURVE is what admits it
    with pytest.raises(ValueError, match="refusing to bind"):
        bindcheck.check_bind(dataclasses.replace(cfg, curve_secret=None, authorized_keys=None))


def test_incomplete_curve_settings_are_refused(keys, tmp_path):
    with pytest.raises(ValueError, match="go together"):
        bindcheck.check_bind(Config(curve_secret=keys["server_secret"]))
    with pytest.raises(ValueError, match="go together"):
        bindcheck.check_bind(Config(authorized_keys=keys["authorized"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no public keys"):
        bindcheck.check_bind(Config(curve_secret=keys["server_secret"], authorized_keys=str(empty)))
    with pytest.raises(ValueError, match="no secret key"):  # the public file where the pair belongs
        bindcheck.check_bind(Config(curve_secret=keys["server_public"],
                                   authorized_keys=keys["authorized"]))


def test_cli_refuses_public_bind_before_starting_anything(tmp_path):
    data = tmp_path / "data"
    r = flin_cli("start", "--data", str(data), "--shards", "1", "--bind", "tcp://0.0.0.0:7799")
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode()
    assert "refusing to bind tcp://0.0.0.0:7799" in err and "--insecure" in err
    assert not data.exists()


def test_ipc_in_a_folder_others_can_open_is_warned_about(tmp_path, caplog):
    os.chmod(tmp_path, 0o755)
    with caplog.at_level(logging.WARNING, logger="flin.security"):
        bindcheck.check_bind(Config(bind="ipc://%s/c.sock" % tmp_path))
    assert any("other local users" in r.getMessage() for r in caplog.records)
    caplog.clear()
    os.chmod(tmp_path, 0o700)
    with caplog.at_level(logging.WARNING, logger="flin.security"):
        bindcheck.check_bind(Config(bind="ipc://%s/c.sock" % tmp_path))
    assert not caplog.records


# -- keys ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys():
    """``flin keygen`` output, plus a stranger's pair the router does not know."""
    with tempfile.TemporaryDirectory(prefix="flin-keys-", dir="/tmp") as d:
        r = flin_cli("keygen", os.path.join(d, "k"))
        assert r.returncode == 0, r.stderr
        stranger = curve.keygen(os.path.join(d, "stranger"), clients=("eve",))
        yield {
            "dir": os.path.join(d, "k"),
            "server_secret": os.path.join(d, "k", "server.key_secret"),
            "server_public": os.path.join(d, "k", "server.key"),
            "client_secret": os.path.join(d, "k", "client.key_secret"),
            "authorized": os.path.join(d, "k", "authorized"),
            "stranger_secret": os.path.join(d, "stranger", "eve.key_secret"),
            "stranger_server": os.path.join(d, "stranger", "server.key"),
            "stranger_written": stranger,
        }


def test_keygen_writes_owner_only_pairs_and_the_authorized_folder(keys):
    d = keys["dir"]
    assert sorted(os.listdir(d)) == ["authorized", "client.key", "client.key_secret",
                                     "server.key", "server.key_secret"]
    assert os.listdir(keys["authorized"]) == ["client.key"]
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600
    pub, sec = curve.load_key_pair(keys["client_secret"])
    assert len(pub) == len(sec) == 40
    assert curve.load_public_key(os.path.join(keys["authorized"], "client.key")) == pub


def test_keygen_adds_clients_keeps_the_server_and_never_overwrites(tmp_path):
    d = str(tmp_path / "k")
    curve.keygen(d)
    server = curve.load_key_pair(os.path.join(d, "server.key_secret"))
    curve.keygen(d, clients=("alice", "bob"))
    assert curve.load_key_pair(os.path.join(d, "server.key_secret")) == server
    assert sorted(os.listdir(os.path.join(d, "authorized"))) == ["alice.key", "bob.key", "client.key"]
    with pytest.raises(FileExistsError):
        curve.keygen(d, clients=("alice",))
    r = flin_cli("keygen", d, "--client", "bob")
    assert r.returncode == 2 and b"already has keys" in r.stderr


def test_client_key_arguments(keys):
    pair = curve.load_key_pair(keys["client_secret"])
    server = curve.load_public_key(keys["server_public"])
    assert curve.client_keys(server.decode(), pair) == (server, *pair)
    assert curve.client_keys(None, None) is None
    with pytest.raises(ValueError):
        flin.Client("ipc:///nowhere", server_key=keys["server_public"])
    with pytest.raises(ValueError):
        flin.Client("ipc:///nowhere", server_key=keys["server_public"],
                    client_keys=keys["server_public"])  # a public file is not a pair
    with pytest.raises(OSError):
        flin.Client("ipc:///nowhere", server_key="/no/such/file",
                    client_keys=keys["client_secret"])


# -- case 16: CURVE on the client endpoint --------------------------------------------
@pytest.fixture(scope="module")
def curve_cluster(keys):
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=2, extra=["--curve-secret", keys["server_secret"],
                                             "--authorized-keys", keys["authorized"]]).start()
        yield c
        if c.proc is not None:
            assert c.stop() == 0


def _authorized_client(cluster, keys, **kw):
    return cluster.client(server_key=keys["server_public"], client_keys=keys["client_secret"], **kw)


def _refused(make, timeout: float = 1.0) -> float:
    """Seconds a refused client took to give up; fails if it got an answer."""
    t0 = time.monotonic()
    with make(timeout=timeout, retries=0) as c:
        with pytest.raises((errors.ConnectionFailed, errors.Timeout)):
            c.ping()
    return time.monotonic() - t0


def test_authorized_key_works(curve_cluster, keys):
    with _authorized_client(curve_cluster, keys) as c:
        c.set(b"sec:a", b"1")
        assert c.get(b"sec:a") == b"1"
        assert c.ping() is True


def test_every_threads_socket_uses_the_keys(curve_cluster, keys):
    """A Client shared by threads opens a socket per thread: each one is
    CURVE-secured (an unsecured one would never be answered)."""
    import threading
    got: list = []
    with _authorized_client(curve_cluster, keys, timeout=3.0, retries=0) as c:
        def one(i: int) -> None:
            try:
                c.set(b"sec:t%d" % i, b"%d" % i)
                got.append(c.get(b"sec:t%d" % i) == b"%d" % i)
            except errors.FlinError as exc:
                got.append(exc)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
    assert got == [True] * 4, got


def test_the_asyncio_client_uses_the_keys_and_is_refused_without_the_right_ones(curve_cluster, keys):
    """``flin.asyncio.Client`` takes the same key arguments; its one shared
    socket is CURVE-secured, and a stranger's key gets no answer in time."""
    import asyncio

    import flin.asyncio

    async def main():
        async with flin.asyncio.Client(curve_cluster.endpoint, timeout=3.0,
                                       server_key=keys["server_public"],
                                       client_keys=keys["client_secret"]) as db:
            await asyncio.gather(*(db.set(b"sec:aio%d" % i, b"%d" % i) for i in range(20)))
            got = await asyncio.gather(*(db.get(b"sec:aio%d" % i) for i in range(20)))
        t0 = time.monotonic()
        async with flin.asyncio.Client(curve_cluster.endpoint, timeout=1.0, retries=0,
                                       server_key=keys["server_public"],
                                       client_keys=keys["stranger_secret"]) as eve:
            with pytest.raises((errors.ConnectionFailed, errors.Timeout)):
                await eve.ping()
        return got, time.monotonic() - t0
    got, took = asyncio.run(main())
    assert got == [b"%d" % i for i in range(20)]
    assert took < 3.0


def test_unknown_key_is_refused_within_the_timeout(curve_cluster, keys):
    took = _refused(lambda **kw: curve_cluster.client(
        server_key=keys["server_public"], client_keys=keys["stranger_secret"], **kw))
    assert took < 3.0


def test_no_key_is_refused_within_the_timeout(curve_cluster):
    assert _refused(curve_cluster.client) < 3.0
    with RawPeer(curve_cluster.endpoint) as raw:  # a plain peer's message is never read
        raw.sock.send(protocol.encode(1, [[PING]]))
        assert not raw.sock.poll(1000)


def test_wrong_server_key_is_refused(curve_cluster, keys):
    # the client's key is authorised, but it expects another server: no handshake
    assert _refused(lambda **kw: curve_cluster.client(
        server_key=keys["stranger_server"], client_keys=keys["client_secret"], **kw)) < 3.0


def test_refused_clients_leave_the_router_serving(curve_cluster, keys):
    for _ in range(3):
        _refused(curve_cluster.client, timeout=0.3)
    with _authorized_client(curve_cluster, keys) as c:
        assert c.ping() is True
    assert curve_cluster.proc.poll() is None


def test_cli_connects_with_keys_and_fails_without(curve_cluster, keys):
    ep = curve_cluster.endpoint
    r = flin_cli("set", "-e", ep, "--server-key", keys["server_public"],
                 "--client-key", keys["client_secret"], "sec:cli", "hello")
    assert r.returncode == 0, r.stderr
    r = flin_cli("get", "-e", ep, "--server-key", keys["server_public"],
                 "--client-key", keys["client_secret"], "sec:cli")
    assert (r.returncode, r.stdout) == (0, b"hello\n")
    env = dict(os.environ, FLIN_SERVER_KEY=keys["server_public"],
               FLIN_CLIENT_KEY=keys["client_secret"])
    r = subprocess.run([*FLIN, "get", "-e", ep, "sec:cli"], cwd=ROOT, capture_output=True,
                       env=env, timeout=30)
    assert (r.returncode, r.stdout) == (0, b"hello\n")
    r = flin_cli("get", "-e", ep, "--timeout", "1", "sec:cli")
    assert r.returncode == 3 and b"cannot reach" in r.stderr
    r = flin_cli("get", "-e", ep, "--timeout", "1", "--server-key", keys["server_public"],
                 "--client-key", keys["stranger_secret"], "sec:cli")
    assert r.returncode == 3 and b"CURVE" in r.stderr


# -- the router-worker link --------------------------------------------------------------
def test_backend_link_with_curve(tmp_short):
    bk = os.path.join(tmp_short, "backend-keys")
    r = flin_cli("keygen", bk, "--server", "router", "--client", "worker")
    assert r.returncode == 0, r.stderr
    c = make_cluster(tmp_short, shards=2, extra=["--backend-keys", bk]).start()
    try:
        with c.client() as cl:
            cl.mset({b"bk:%d" % i: b"v%d" % i for i in range(50)})
            assert cl.mget([b"bk:%d" % i for i in range(50)]) == [b"v%d" % i for i in range(50)]
    finally:
        assert c.stop() == 0


def test_backend_refuses_a_worker_with_an_unknown_key(tmp_path):
    """In-process: the same functions the router and worker call."""
    bk = str(tmp_path / "bk")
    curve.keygen(bk, server="router", clients=("worker",))
    other = str(tmp_path / "other")
    curve.keygen(other, server="router", clients=("worker",))
    cfg = Config(data=str(tmp_path / "data"), backend_keys=bk)
    endpoint = "ipc://%s/b.sock" % tmp_path
    ctx = zmq.Context()
    gate = router_sockets.Gatekeeper(ctx)
    back = ctx.socket(zmq.ROUTER)
    socks = [back]
    try:
        router_sockets.secure_backend(gate, back, cfg)
        back.bind(endpoint)
        for folder, admitted in ((other, False), (bk, True)):
            worker = ctx.socket(zmq.DEALER)
            socks.append(worker)
            # the stranger pins the right router key but presents its own worker key
            worker.curve_serverkey = curve.load_public_key(os.path.join(bk, "router.key"))
            worker.curve_publickey, worker.curve_secretkey = curve.load_key_pair(
                os.path.join(folder, "worker.key_secret"))
            worker.connect(endpoint)
            worker.send(b"hello")
            assert bool(back.poll(1000)) is admitted
            if admitted:
                assert back.recv_multipart()[-1] == b"hello"
    finally:
        for s in socks:
            s.close(0)
        gate.stop()
        ctx.term()


# -- case 18: identity takeover --------------------------------------------------------
def test_reused_identity_cannot_take_over_replies(cluster):
    with RawPeer(cluster.endpoint, identity=b"victim") as victim:
        assert victim.ask(protocol.encode(1, [[PING]])) == (1, [True])
        with RawPeer(cluster.endpoint, identity=b"victim") as thief:
            thief.sock.send(protocol.encode(2, [[PING]]))
            time.sleep(0.3)
            victim.sock.send(protocol.encode(3, [[PING]]))
            assert victim.sock.poll(5000)
            assert protocol.decode(victim.sock.recv()) == (3, [True])
            # the thief got neither its own reply nor the victim's
            assert not thief.sock.poll(1000)
            assert not victim.sock.poll(200)
        assert victim.ask(protocol.encode(4, [[PING]])) == (4, [True])


def test_a_pool_of_routers_is_all_behind_curve(keys):
    """Every router of a pool serves CURVE with the one key pair: an authorised
    client spreads over all of them; a stranger is refused by each."""
    with tempfile.TemporaryDirectory(prefix="flin-", dir="/tmp") as d:
        c = make_cluster(d, shards=2, extra=["--routers", "2", "--curve-secret",
                                             keys["server_secret"], "--authorized-keys",
                                             keys["authorized"]]).start()
        try:
            eps = [c.endpoint, c.endpoint + ".1"]

            def requests(ep: str) -> int:
                with flin.Client(ep, server_key=keys["server_public"], discover=False,
                                 client_keys=keys["client_secret"], timeout=5) as one:
                    return one.stats()["router"]["requests"]
            before = [requests(ep) for ep in eps]
            with _authorized_client(c, keys) as db:
                for i in range(200):
                    db.set(b"curvepool:%d" % i, b"v")
            grown = [requests(ep) - b - 1 for ep, b in zip(eps, before)]
            assert min(grown) >= 50, grown
            for ep in eps:
                assert _refused(lambda **kw: flin.Client(
                    ep, server_key=keys["server_public"], client_keys=keys["stranger_secret"],
                    discover=False, **kw)) < 3
        finally:
            assert c.stop() == 0
