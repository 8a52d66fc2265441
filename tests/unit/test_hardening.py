"""Hardened edges: argon2id passwords (and the upgrade of old scrypt hashes at login), secrets that never show
in reprs, and a fetcher that ignores the environment's proxy variables unless a source names a proxy."""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from annotate_anyone.access import auth
from annotate_anyone.access.models import User
from annotate_anyone.access.ratelimit import SqliteRateLimiter
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope
from annotate_anyone.errors import InvalidInput
from annotate_anyone.home.setup import init_home
from annotate_anyone.metrics import RATE_LIMIT_ERRORS
from annotate_anyone.pipeline.fetch import HttpFetcher, ReadStage
from annotate_anyone.pipeline.record import Record
from annotate_anyone.settings import Settings, reveal

BODY = b"\xff\xd8 not really a jpeg, but bytes"


def _scrypt_hash(password: str) -> str:
    """A hash as the previous release stored it (scrypt, N=2^14)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${2**14}$8$1${salt.hex()}${digest.hex()}"


# ------------------------------------------------------------------------------------------ passwords


def test_passwords_are_argon2id_and_verify() -> None:
    stored = auth.hash_password("correct horse")
    assert stored.startswith("$argon2id$v=19$")
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct hors", stored)
    assert not auth.needs_rehash(stored)
    assert auth.hash_password("correct horse") != stored  # salted
    assert not auth.verify_password("x", "$argon2id$garbage") and not auth.verify_password("x", "garbage")


def test_old_scrypt_hash_still_logs_in_and_is_rehashed(embedded: Settings) -> None:
    init_home(embedded)
    old = _scrypt_hash("an old password")
    assert auth.verify_password("an old password", old) and auth.needs_rehash(old)
    with session_scope(embedded.db_url) as session:
        session.add(User(username="veteran", password_hash=old, role=auth.parse_role("engineer")))
    with session_scope(embedded.db_url) as session, pytest.raises(auth.Unauthorized):
        auth.authenticate_user(session, username="veteran", password="a wrong password")
    with session_scope(embedded.db_url) as session:  # a failed login changes nothing
        assert session.scalar(select(User.password_hash).where(User.username == "veteran")) == old
    with session_scope(embedded.db_url) as session:
        auth.authenticate_user(session, username="veteran", password="an old password")
    with session_scope(embedded.db_url) as session:
        upgraded = session.scalar(select(User.password_hash).where(User.username == "veteran"))
    assert upgraded.startswith("$argon2id$") and not auth.needs_rehash(upgraded)
    with session_scope(embedded.db_url) as session:  # and the new hash logs in
        assert auth.authenticate_user(session, username="veteran", password="an old password").username == "veteran"
        assert session.scalar(select(User.password_hash).where(User.username == "veteran")) == upgraded


# -------------------------------------------------------------------------------------------- secrets


def test_secrets_are_hidden_in_reprs_and_revealed_on_purpose() -> None:
    settings = Settings(secret_key="k" * 40, webhook_secret="w" * 40, label_studio_token="t" * 40, s3_secret_key="s3")
    text = repr(settings) + str(settings.model_dump())
    for value in ("k" * 40, "w" * 40, "t" * 40):
        assert value not in text
    assert reveal(settings.secret_key) == "k" * 40 and reveal(settings.label_studio_token) == "t" * 40
    assert reveal(settings.s3_secret_key) == "s3" and reveal(None) is None


# -------------------------------------------------------------------------------------------- proxies


class _Origin(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy: fetches the absolute URL of the request line; counts what it forwarded."""

    forwarded: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        _ForwardProxy.forwarded.append(self.path)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for the proxy itself
        with opener.open(self.path, timeout=5) as upstream:
            body = upstream.read()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "1.1 test-proxy")
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def origin() -> Iterator[str]:
    httpd, url = _serve(_Origin)
    yield url
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def proxy() -> Iterator[str]:
    _ForwardProxy.forwarded = []
    httpd, url = _serve(_ForwardProxy)
    yield url
    httpd.shutdown()
    httpd.server_close()


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_environment_proxy_variables_are_ignored(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{_dead_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(httpx.ConnectError):  # the environment is hostile: a client that trusts it goes nowhere
        httpx.get(f"{origin}/a.jpg", timeout=2.0)
    with HttpFetcher(concurrency=1, retries=0, timeout=2.0, allow_networks=("127.0.0.0/8",)) as fetcher:
        result = fetcher.fetch(f"{origin}/a.jpg")
    assert result.ok, result.detail  # straight to 127.0.0.1, not through the dead proxy
    assert result.data == BODY
    stage = ReadStage(allow_private=True, concurrency=1)
    [record] = stage.process_batch([Record(item_id=1, uri=f"{origin}/b.jpg")])
    stage.fetcher.close()
    assert not record.dropped and record.data == BODY


def test_a_source_may_name_its_own_proxy(origin: str, proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_dead_port()}")  # still ignored
    with HttpFetcher(concurrency=1, retries=0, timeout=5.0, allow_networks=("127.0.0.0/8",), proxy=proxy) as fetcher:
        result = fetcher.fetch(f"{origin}/via.jpg")
    assert result.ok, result.detail
    assert result.data == BODY and _ForwardProxy.forwarded == [f"{origin}/via.jpg"]
    # the guard vets the proxy's address too: a loopback proxy is refused where loopback is not allowed
    with HttpFetcher(concurrency=1, retries=0, timeout=5.0, allow_networks=(), proxy=proxy) as strict:
        refused = strict.fetch("http://93.184.215.14/x.jpg")  # a public target, through a private proxy
    assert refused.reason == "fetch:ssrf_blocked", refused.detail
    assert len(_ForwardProxy.forwarded) == 1
    with pytest.raises(ValueError, match="proxy"):
        HttpFetcher(proxy="socks9://nowhere")


def test_source_proxy_option_is_checked(embedded: Settings) -> None:
    init_home(embedded)
    with session_scope(embedded.db_url) as session:
        with pytest.raises(InvalidInput, match="proxy"):
            create_source(session, name="bad", kind="url_list", uri="https://example.org/u.csv", options={"proxy": 3})
        source = create_source(
            session,
            name="proxied",
            kind="url_list",
            uri="https://example.org/u.csv",
            options={"proxy": "http://proxy.internal:3128"},
        )
        assert source.options["proxy"] == "http://proxy.internal:3128"


# --------------------------------------------------------------------------------------- rate limiting


def test_sqlite_limiter_fails_open_when_its_file_stays_locked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    limiter = SqliteRateLimiter(tmp_path / "ratelimit.db")
    assert [limiter.take("k", capacity=1, rate=0.001) > 0 for _ in range(2)] == [False, True]  # it limits
    holder = sqlite3.connect(tmp_path / "ratelimit.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the limiter's 5 s timeout
    before = RATE_LIMIT_ERRORS.labels("sqlite")._value.get()
    try:
        with caplog.at_level(logging.WARNING, logger="annotate_anyone.access.ratelimit"):
            assert limiter.take("k", capacity=1, rate=0.001) == 0.0  # let through, not an error
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert RATE_LIMIT_ERRORS.labels("sqlite")._value.get() == before + 1
    assert any("rate limiter (sqlite) failed" in r.getMessage() for r in caplog.records)
    assert limiter.take("k", capacity=1, rate=0.001) > 0  # the lock gone, the bucket is as it was
