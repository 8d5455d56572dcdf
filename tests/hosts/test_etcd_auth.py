"""etcd with users and passwords (etcd's own auth, tokens that expire every
2 s here): a node given the user and its password file serves, renewing its
token as it expires; without them every command says etcd refused it. And
etcd over TLS: with its CA the node serves; without it nothing connects."""
from __future__ import annotations

import os
import subprocess
import time

from tests.support.hosts import Etcd, Node, flin_cli


def _etcdctl(url: str, *args: str) -> None:
    got = subprocess.run(["etcdctl", "--endpoints", url, *args], capture_output=True,
                         text=True, env={**os.environ, "ETCDCTL_API": "3"})
    assert got.returncode == 0, got.stderr


def test_a_node_with_the_etcd_password_serves_and_one_without_is_refused(tmp_short):
    etcd = Etcd(tmp_short, extra_args=("--auth-token-ttl", "2")).start()
    try:
        _etcdctl(etcd.url, "user", "add", "root", "--new-user-password=s3cret",
                 "--interactive=false")
        _etcdctl(etcd.url, "user", "grant-role", "root", "root")
        _etcdctl(etcd.url, "--user", "root:s3cret", "auth", "enable")
        pw = os.path.join(tmp_short, "etcd.pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        auth = ["--etcd-user", "root", "--etcd-password-file", pw]
        base = ["--etcd", etcd.url, "--cluster", "a"]
        got = flin_cli("cluster", "create", *base, "--shards", "2")
        assert got.returncode == 4 and "refused" in got.stderr, got.stderr
        got = flin_cli("cluster", "create", *base, *auth, "--shards", "2")
        assert got.returncode == 0, got.stderr
        node = Node("n1", "127.0.0.2", os.path.join(tmp_short, "n1"), etcd.url, "a", auth)
        node.start()
        try:
            with node.client() as c:
                c.set(b"k", b"v")
                time.sleep(5)          # tokens expire every 2 s: the agent takes new ones
                assert c.node()["etcd"]["ok"], c.node()["etcd"]
                assert c.get(b"k") == b"v"
            got = flin_cli("cluster", "status", *base, *auth)
            assert got.returncode == 0 and "1/1 nodes alive" in got.stdout, got.stderr
            wrong = os.path.join(tmp_short, "wrong.pw")
            with open(wrong, "w") as f:
                f.write("nope\n")
            got = flin_cli("cluster", "status", *base, "--etcd-user", "root",
                           "--etcd-password-file", wrong)
            assert got.returncode == 4 and "refused" in got.stderr, got.stderr
        finally:
            assert node.stop() == 0
    finally:
        etcd.stop()


def test_etcd_over_tls_with_its_ca_and_refused_without(tmp_short):
    cert, key = os.path.join(tmp_short, "etcd.pem"), os.path.join(tmp_short, "etcd.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    etcd = Etcd(tmp_short, tls=(cert, key)).start()
    try:
        assert etcd.url.startswith("https://")
        base = ["--etcd", etcd.url, "--cluster", "s"]
        got = flin_cli("cluster", "create", *base, "--shards", "2")
        assert got.returncode == 3 and "cannot be reached" in got.stderr, got.stderr
        got = flin_cli("cluster", "create", *base, "--etcd-ca", cert, "--shards", "2")
        assert got.returncode == 0, got.stderr
        node = Node("n1", "127.0.0.2", os.path.join(tmp_short, "n1"), etcd.url, "s",
                    ["--etcd-ca", cert])
        node.start()
        try:
            with node.client() as c:
                c.set(b"k", b"v")
                assert c.get(b"k") == b"v" and c.node()["etcd"]["ok"]
        finally:
            assert node.stop() == 0
    finally:
        etcd.stop()
