"""The etcd client of cluster mode: a thin layer over ``etcd3gw``.

Why etcd3gw: it is maintained (OpenStack), synchronous like the supervisor
and the CLI, and speaks etcd's JSON gateway over ``requests``, so it needs
no gRPC or protobuf (``python-etcd3`` is unmaintained and fails to import
with protobuf >= 4; ``aetcd`` is asyncio-only and pulls grpcio in).

What this adds: several endpoints (the next one is tried when one cannot be
reached), user/password (the gateway's ``auth/authenticate`` token, taken
again when it expires), TLS (a CA file, a client certificate), a timeout
on every call, compare-and-swap on a key's revision, and one error type,
``EtcdError``, whose message says which endpoints were tried and why.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
from etcd3gw import exceptions as gw_errors
from etcd3gw.client import Etcd3Client

DEFAULT_TIMEOUT_S = 2.0


class EtcdError(Exception):
    """etcd could not be reached, or refused the request (the message says which and why)."""


class EtcdRefused(EtcdError):
    """etcd answered, and refused the request (a wrong password, no permission ...)."""


@dataclass
class EtcdOptions:
    """How to reach etcd: ``urls`` as ``http[s]://HOST:PORT`` (several: any may answer)."""
    urls: list[str]
    user: str | None = None
    password: str | None = None
    ca: str | None = None                 # CA bundle for https endpoints
    cert: str | None = None               # client certificate (PEM) ...
    key: str | None = None                # ... and its key
    timeout: float = DEFAULT_TIMEOUT_S

    @classmethod
    def parse(cls, urls: str, **kw: Any) -> "EtcdOptions":
        found = [u.strip() for u in urls.split(",") if u.strip()]
        if not found:
            raise ValueError("--etcd needs at least one URL (http://HOST:PORT)")
        for u in found:
            scheme, sep, rest = u.partition("://")
            host, colon, port = rest.rstrip("/").rpartition(":")
            if scheme not in ("http", "https") or not sep or not colon or not port.isdigit():
                raise ValueError("etcd URL %r is not http[s]://HOST:PORT" % u)
        return cls(found, **kw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Etcd:
    """An etcd client. Every call raises ``EtcdError`` when no endpoint
    answers within the timeout, or when etcd refuses it."""

    def __init__(self, opts: EtcdOptions) -> None:
        self.opts = opts
        self.at = 0                      # the endpoint that last answered
        self._clients: dict[int, Etcd3Client] = {}
        self._token: str | None = None

    # -- plumbing ---------------------------------------------------------------
    def _client(self, i: int) -> Etcd3Client:
        c = self._clients.get(i)
        if c is None:
            scheme, _, rest = self.opts.urls[i].partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            session = requests.Session()
            if self.opts.ca:
                session.verify = self.opts.ca
                # else REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) in the environment
                # would win over the session's CA (requests merges it per request)
                session.trust_env = False
            if self.opts.cert and self.opts.key:
                session.cert = (self.opts.cert, self.opts.key)
            c = Etcd3Client(host=host.strip("[]"), port=int(port), protocol=scheme,
                            timeout=self.opts.timeout, api_path="/v3/", session=session)
            self._clients[i] = c
        return c

    def _authenticate(self, c: Etcd3Client) -> None:
        if self.opts.user is None:
            return
        got = c.post(c.get_url("/auth/authenticate"),
                     json={"name": self.opts.user, "password": self.opts.password or ""})
        self._token = got["token"]

    def call(self, fn: Callable[[Etcd3Client], Any]) -> Any:
        """Run ``fn(client)`` on the endpoint that last answered, then on the others."""
        errors = []
        n = len(self.opts.urls)
        for k in range(n):
            i = (self.at + k) % n
            c = self._client(i)
            for attempt in range(2):
                try:
                    if self.opts.user is not None and self._token is None:
                        self._authenticate(c)
                    if self._token is not None:
                        c.session.headers["Authorization"] = self._token
                    result = fn(c)
                    self.at = i
                    return result
                except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError,
                        requests.RequestException) as exc:
                    errors.append("%s: %s" % (self.opts.urls[i], _short(exc)))
                    break
                except gw_errors.Etcd3Exception as exc:
                    text = str(getattr(exc, "detail_text", "") or exc)
                    if self.opts.user is not None and attempt == 0 and "token" in text.lower():
                        self._token = None       # expired: take a new one, once
                        continue
                    raise EtcdRefused("etcd %s refused the request: %s"
                                    % (self.opts.urls[i], _short(text))) from None
        raise EtcdError("etcd cannot be reached (%s)" % "; ".join(errors))

    def close(self) -> None:
        for c in self._clients.values():
            c.session.close()
        self._clients.clear()

    # -- keys ---------------------------------------------------------------------
    def get(self, key: bytes) -> tuple[bytes | None, int]:
        """(value, mod revision) of ``key``; (None, 0) if it is absent."""
        got = self.call(lambda c: c.post(c.get_url("/kv/range"), json={"key": _b64(key)}))
        kvs = got.get("kvs") or []
        if not kvs:
            return None, 0
        return _unb64(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])

    def get_prefix(self, prefix: bytes) -> tuple[dict[bytes, tuple[bytes, int]], int]:
        """Every key under ``prefix``: {key: (value, lease id)}, and the store's revision."""
        got = self.call(lambda c: c.post(c.get_url("/kv/range"), json={
            "key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}))
        out = {}
        for kv in got.get("kvs") or []:
            out[_unb64(kv["key"])] = (_unb64(kv.get("value", "")), int(kv.get("lease", 0)))
        return out, int(got["header"]["revision"])

    def put(self, key: bytes, value: bytes, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        self.call(lambda c: c.post(c.get_url("/kv/put"), json=body))

    def delete(self, key: bytes) -> None:
        self.call(lambda c: c.post(c.get_url("/kv/deleterange"), json={"key": _b64(key)}))

    def swap(self, key: bytes, value: bytes, revision: int, lease: int = 0) -> bool:
        """Put ``value`` only if ``key``'s mod revision is still ``revision``
        (0: only if it does not exist); whether it did."""
        return self.swap_many([(key, revision)], [(key, value, lease)])

    def swap_many(self, compares: list[tuple[bytes, int]],
                  puts: list[tuple[bytes, bytes, int]]) -> bool:
        """One transaction: the ``puts`` ``(key, value, lease)`` only if every
        compared key's mod revision is still the one given (0: it does not
        exist); whether they were made."""
        ops = []
        for key, value, lease in puts:
            put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
            if lease:
                put["lease"] = lease
            ops.append({"request_put": put})
        txn = {"compare": [{"key": _b64(key), "result": "EQUAL", "target": "MOD",
                            "mod_revision": rev} for key, rev in compares],
               "success": ops, "failure": []}
        got = self.call(lambda c: c.post(c.get_url("/kv/txn"), data=json.dumps(txn)))
        return bool(got.get("succeeded"))

    # -- leases -------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        got = self.call(lambda c: c.post(c.get_url("/lease/grant"), json={"TTL": ttl}))
        return int(got["ID"])

    def refresh(self, lease: int) -> int:
        """Keep ``lease`` alive; its new TTL, or -1 if it has already expired."""
        got = self.call(lambda c: c.post(c.get_url("/lease/keepalive"), json={"ID": lease}))
        return int((got.get("result") or {}).get("TTL", -1))

    def revoke(self, lease: int) -> None:
        self.call(lambda c: c.post(c.get_url("/kv/lease/revoke"), json={"ID": lease}))

    # -- watches ------------------------------------------------------------------
    def watch_prefix(self, prefix: bytes, start_revision: int) -> tuple[Iterator[Any], Callable]:
        """Events on keys under ``prefix`` from ``start_revision`` on, and a
        cancel function (the watch runs in a thread of etcd3gw's; it ends
        when the endpoint goes away, and the iterator then blocks: callers
        poll as well)."""
        c = self._client(self.at)
        if self._token is not None:
            c.session.headers["Authorization"] = self._token
        return c.watch_prefix(prefix, start_revision=start_revision)


def _short(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text[:200]

