"""HttpFetcher and ReadStage against a real threaded HTTP server on loopback."""

from __future__ import annotations

import io
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import skimage.data
from PIL import Image

from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.fetch import (
    USER_AGENT,
    FetchFailure,
    HttpFetcher,
    ReadStage,
    SsrfGuard,
    robots_disallowed,
)
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import run_stages

LOOPBACK = ("127.0.0.0/8",)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _png_bomb(side: int = 10_000) -> bytes:
    """A real decompression bomb: a tiny PNG that inflates to ``side``x``side`` grey pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * ((side + 1) * side), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


JPEG = _jpeg()
BOMB = _png_bomb()


class Handler(BaseHTTPRequestHandler):
    """Routes by path; ``hits`` counts requests per path (for retry assertions)."""

    hits: Counter[str] = Counter()
    agents: list[str] = []
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        path = self.path
        Handler.hits[path] += 1
        Handler.agents.append(self.headers.get("User-Agent", ""))
        if path == "/img.jpg":
            self._send(200, JPEG)
        elif path == "/wrong-type":
            self._send(200, JPEG, "text/html; charset=utf-8")
        elif path == "/html":
            self._send(200, b"<html><body>not an image</body></html>", "image/jpeg")
        elif path == "/truncated.jpg":
            self._send(200, JPEG[: len(JPEG) // 2])
        elif path == "/bomb.png":
            self._send(200, BOMB, "image/png")
        elif path == "/404":
            self._send(404, b"nope", "text/plain")
        elif path == "/500":
            self._send(500, b"boom", "text/plain")
        elif path == "/flaky":
            if Handler.hits[path] % 2 == 1:
                self._send(503, b"busy", "text/plain", {"Retry-After": "0"})
            else:
                self._send(200, JPEG)
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, JPEG)
        elif path == "/huge":
            self._send(200, b"\0" * 3_000_000, "image/jpeg")
        elif path == "/huge-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(100):
                    block = b"\0" * 65536
                    self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client hung up once over its cap
        elif path == "/noai":
            self._send(200, JPEG, headers={"X-Robots-Tag": "noai"})
        elif path == "/noimageai-for-us":
            self._send(200, JPEG, headers={"X-Robots-Tag": "annotate-anyone: noimageai"})
        elif path == "/noai-other-bot":
            self._send(200, JPEG, headers={"X-Robots-Tag": "otherbot: noai"})
        elif path == "/loop":
            self._send(302, b"", "text/plain", {"Location": "/loop"})
        elif path == "/redirect":
            self._send(301, b"", "text/plain", {"Location": "/img.jpg"})
        elif path == "/to-metadata":
            self._send(302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/meta-data/"})
        else:
            self._send(404, b"unknown", "text/plain")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients hanging up early (size cap, timeouts) is the point of several tests


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def fetcher() -> Iterator[HttpFetcher]:
    with HttpFetcher(
        concurrency=4,
        timeout=0.5,
        max_bytes=1_000_000,
        retries=2,
        backoff=0.01,
        max_redirects=3,
        allow_networks=LOOPBACK,
    ) as f:
        yield f


def test_fetches_bytes_with_user_agent(server, fetcher):
    result = fetcher.fetch(f"{server}/img.jpg")
    assert result.ok and result.data == JPEG and result.status == 200
    assert Handler.agents[-1] == USER_AGENT and USER_AGENT.startswith("annotate-anyone/")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/404", "fetch:http_404"),
        ("/500", "fetch:http_500"),
        ("/slow", "fetch:timeout"),
        ("/loop", "fetch:too_many_redirects"),
        ("/huge", "fetch:too_large"),
        ("/huge-chunked", "fetch:too_large"),
        ("/noai", "fetch:robots_noai"),
        ("/noimageai-for-us", "fetch:robots_noai"),
        ("/to-metadata", "fetch:ssrf_blocked"),
    ],
)
def test_failures_become_reasons(server, fetcher, path, reason):
    result = fetcher.fetch(server + path)
    assert not result.ok and result.data is None
    assert result.reason == reason, result.detail
    assert result.detail


def test_only_transient_errors_are_retried(server, fetcher):
    Handler.hits.clear()
    assert fetcher.fetch(f"{server}/500").attempts == 3 and Handler.hits["/500"] == 3
    assert fetcher.fetch(f"{server}/404").attempts == 1 and Handler.hits["/404"] == 1
    flaky = fetcher.fetch(f"{server}/flaky")
    assert flaky.ok and flaky.attempts == 2


def test_redirect_followed_and_other_bots_directives_ignored(server, fetcher):
    redirected = fetcher.fetch(f"{server}/redirect")
    assert redirected.ok and redirected.final_url.endswith("/img.jpg")
    assert fetcher.fetch(f"{server}/noai-other-bot").ok


def test_ssrf_guard_refuses_loopback_by_default(server):
    with HttpFetcher(concurrency=1, retries=0) as strict:
        result = strict.fetch(f"{server}/img.jpg")
    assert result.reason == "fetch:ssrf_blocked"


def test_ssrf_guard_checks_the_address_actually_connected(server):
    """DNS rebinding: the first answer (the guard's check) is public, the one used to connect is loopback.
    The connection is refused before any request reaches the server."""
    hits_before = Handler.hits.get("/img.jpg", 0)
    with HttpFetcher(concurrency=1, retries=0) as strict:
        strict.guard._resolve = lambda host, port: ["93.184.216.34"]  # what the attacker's DNS says first
        result = strict.fetch(server.replace("127.0.0.1", "localhost") + "/img.jpg")
    assert result.reason == "fetch:ssrf_blocked" and "connected to non-public" in result.detail
    assert Handler.hits.get("/img.jpg", 0) == hits_before  # nothing was sent


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "224.0.0.1", "0.0.0.0"])
def test_ssrf_guard_addresses(address):
    guard = SsrfGuard(resolver=lambda host, port: [address])
    with pytest.raises(FetchFailure) as info:
        guard.check("http://example.test/x.jpg")
    assert info.value.reason == "fetch:ssrf_blocked"
    SsrfGuard(resolver=lambda host, port: ["93.184.216.34"]).check("https://example.test/x.jpg")
    SsrfGuard(allow_private=True, resolver=lambda host, port: [address]).check("http://example.test/x")


def test_robots_directive_parsing():
    assert robots_disallowed(["noai"]) and robots_disallowed(["noindex, nofollow"])
    assert robots_disallowed(["annotate-anyone: noimageai"])
    assert not robots_disallowed(["otherbot: noai"]) and not robots_disallowed(["nofollow"])


def test_read_stage_batch_never_raises(server, fetcher, tmp_path):
    local = tmp_path / "a.jpg"
    local.write_bytes(JPEG)
    uris = [
        f"{server}/img.jpg",
        f"{server}/404",
        f"{server}/wrong-type",
        f"{server}/html",
        f"{server}/truncated.jpg",
        f"{server}/bomb.png",
        str(local),
        local.as_uri(),
        str(tmp_path / "missing.jpg"),
        "ftp://example.test/x.jpg",
    ]
    records = [Record(item_id=i, uri=u) for i, u in enumerate(uris)]
    run_stages([ReadStage(fetcher), DecodeStage(max_pixels=80_000_000)], records)
    outcome = {r.uri.rsplit("/", 1)[-1]: r.drop_reason for r in records}
    assert outcome == {
        "img.jpg": None,
        "404": "fetch:http_404",
        "wrong-type": None,  # the header lies; the bytes are a JPEG
        "html": "decode:not_image",  # the header lies the other way
        "truncated.jpg": "decode:truncated",
        "bomb.png": "decode:bomb",
        "a.jpg": None,
        "missing.jpg": "fetch:not_found",
        "x.jpg": "fetch:unsupported_scheme",
    }
    assert records[6].sha256 == records[7].sha256 == records[0].sha256
    assert records[0].meta["http"]["status"] == 200
