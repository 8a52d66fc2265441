"""Reading original bytes: a guarded HTTP fetcher and the ``read`` stage (http(s), local files, s3).

Every failure becomes a short drop reason (``fetch:http_404``, ``fetch:timeout``, ...) on the record;
nothing raises out of a batch. The content type is sniffed from the bytes later, in decode.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpcore
import httpx

from annotate_anyone import __version__
from annotate_anyone.errors import ConfigError
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.sources.confine import (
    Refused,
    check_regular,
    is_local,
    local_path,
    open_confined,
    open_regular,
)
from annotate_anyone.pipeline.stage import Stage
from annotate_anyone.retry import call_with_retries
from annotate_anyone.settings import Settings, reveal

PROJECT_URL = "https://github.com/annotate-anyone/annotate-anyone"
USER_AGENT = f"annotate-anyone/{__version__} (+{PROJECT_URL})"
UA_TOKEN = "annotate-anyone"
DISALLOWED_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class FetchFailure(Exception):
    """One fetch attempt failed; ``reason`` is the drop reason, ``transient`` whether a retry may help."""

    def __init__(self, reason: str, detail: str, transient: bool = False, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.retry_after = retry_after


@dataclass(slots=True)
class FetchResult:
    """The outcome of fetching one URL: bytes, or a drop reason with detail."""

    url: str
    data: bytes | None = None
    status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    reason: str | None = None
    detail: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def robots_disallowed(values: Sequence[str], token: str = UA_TOKEN) -> bool:
    """True if an ``X-Robots-Tag`` value forbids AI use for us (same rule as img2dataset)."""
    for value in values:
        parts = value.split(":", 1)
        scoped = len(parts) == 2 and " " not in parts[0].strip() and "," not in parts[0]
        agent = parts[0].strip().lower() if scoped else None
        directives = {d.strip().lower() for d in (parts[1] if scoped else value).split(",")}
        if (agent is None or agent == token) and directives & DISALLOWED_DIRECTIVES:
            return True
    return False


class SsrfGuard:
    """Refuses URLs whose host resolves to a private, loopback, link-local, multicast or reserved address.

    ``allow_private`` lifts the guard; ``allow_networks`` (CIDR strings) lets through only those
    networks, e.g. ``("127.0.0.0/8",)`` for a test server on loopback.
    """

    def __init__(
        self,
        allow_private: bool = False,
        allow_networks: Sequence[str] = (),
        resolver: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = [ipaddress.ip_network(n) for n in allow_networks]
        self._resolve = resolver or _resolve

    def check(self, url: str) -> None:
        """Raise :class:`FetchFailure` (``fetch:ssrf_blocked`` / ``fetch:bad_url``) for a refused URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchFailure("fetch:bad_url", f"not an absolute http(s) URL: {url[:200]}")
        if self.allow_private:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(parts.hostname, port)
        except OSError as exc:
            raise FetchFailure("fetch:dns", f"cannot resolve {parts.hostname}: {exc}", transient=True) from exc
        for address in addresses:
            self.check_address(parts.hostname, address, "resolves to")

    def check_address(self, host: str, address: str, how: str = "connected to") -> None:
        """Raise ``fetch:ssrf_blocked`` unless ``address`` (an IP) is public or in ``allow_networks``."""
        if self.allow_private:
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow_networks):
            return
        if not ip.is_global or ip.is_multicast or ip.is_reserved:
            raise FetchFailure("fetch:ssrf_blocked", f"{host} {how} non-public {ip}")

    def connection_trace(self, host: str) -> Callable[[str, dict], None]:
        """An httpcore ``trace`` hook that checks the address each new connection really reached, before
        the request is sent: the name is resolved again at connect time, so a DNS answer that changed since
        :meth:`check` (rebinding) is caught here."""

        def trace(event: str, info: dict) -> None:
            if event == "connection.connect_tcp.complete":
                peer = info["return_value"].get_extra_info("server_addr")
                if peer:
                    self.check_address(host, str(peer[0]))

        return trace


def check_proxy(proxy: str) -> str:
    """``proxy`` if it is an ``http://`` or ``https://`` proxy URL with a host; else :class:`ValueError`."""
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a fetch proxy must be an http(s)://host:port URL, not {proxy[:100]!r}")
    return proxy


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class _Deadline(threading.local):
    """The wall-clock deadline (``time.monotonic()``) of the fetch running in this thread, if any."""

    at: float | None = None


_DEADLINE = _Deadline()


def _time_left(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of this thread's fetch deadline; raises once it has passed."""
    at = _DEADLINE.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the fetch deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait (read, write, TLS handshake) ends by the current fetch's deadline.

    httpx's timeouts bound each socket operation, so a server sending one byte per second never trips
    them; cutting each operation to the time left makes the deadline hold whatever arrives.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with connects and streams bounded by the fetch deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, _time_left(timeout), local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class HttpFetcher:
    """Concurrent HTTP(S) GETs over one pooled client, with limits, retries and an SSRF guard.

    Redirects are followed by hand (at most ``max_redirects``) so every hop passes the guard. Only
    transient failures (timeouts, connection errors, 408/425/429/5xx) are retried, with exponential
    backoff and jitter (``Retry-After`` honoured up to ``max_backoff``). ``timeout`` bounds each network
    wait; ``deadline`` is a wall-clock bound on the whole fetch (connect, headers, body, redirects and
    retries): every socket wait is cut to the time left (see :class:`DeadlineBackend`), so a server that
    drips one byte at a time cannot hold a worker past it.

    Proxy variables of the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are
    ignored: through a proxy the guard would vet the proxy's address, not the target's. A source that needs
    one names it (``options.proxy``); the guard then checks both the target URL and the proxy's address.
    """

    def __init__(
        self,
        *,
        concurrency: int = 16,
        timeout: float = 10.0,
        deadline: float = 60.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = 5,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        allow_private: bool = False,
        allow_networks: Sequence[str] = (),
        user_agent: str = USER_AGENT,
        respect_robots: bool = True,
        proxy: str | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.respect_robots = respect_robots
        self.guard = SsrfGuard(allow_private, allow_networks)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.proxy = check_proxy(proxy) if proxy else None
        transport = httpx.HTTPTransport(limits=limits, proxy=self.proxy)
        transport._pool._network_backend = DeadlineBackend(transport._pool._network_backend)
        self._client = httpx.Client(
            transport=transport,
            trust_env=False,  # no proxy (or netrc, or CA bundle) from the environment: see the class docstring
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": user_agent, "Accept": "image/*,*/*;q=0.5"},
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch_many(self, urls: Sequence[str]) -> list[FetchResult]:
        """Fetch ``urls`` concurrently; results are in input order and never raise."""
        return list(self._pool.map(self.fetch, urls))

    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL with retries; failures come back as a result with ``reason`` set."""
        result = FetchResult(url=url)
        give_up = time.monotonic() + self.deadline
        _DEADLINE.at = give_up

        def once() -> FetchResult:
            result.attempts += 1
            return self._fetch_once(url, result)

        try:
            return call_with_retries(
                once,
                attempts=self.retries + 1,
                retry_on=lambda exc: isinstance(exc, FetchFailure) and exc.transient,
                delay=lambda attempt, exc: self._delay(attempt, getattr(exc, "retry_after", None)),
                deadline=give_up,  # no wait that would end past the fetch's wall-clock deadline
            )
        except FetchFailure as failure:
            result.reason, result.detail = failure.reason, failure.detail
            return result
        except Exception as exc:  # anything unexpected is this URL's failure, not the batch's
            result.reason, result.detail = "fetch:error", f"{type(exc).__name__}: {exc}"
            return result
        finally:
            _DEADLINE.at = None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return min(self.backoff * (2**attempt), self.max_backoff) * (0.5 + random.random() / 2)

    def _fetch_once(self, url: str, result: FetchResult) -> FetchResult:
        current = url
        for _ in range(self.max_redirects + 1):
            self.guard.check(current)
            trace = {"trace": self.guard.connection_trace(urlsplit(current).hostname or "")}
            try:
                with self._client.stream("GET", current, extensions=trace) as response:
                    if response.status_code in REDIRECT_CODES and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    return self._read(response, result, current)
            except httpx.TimeoutException as exc:
                raise FetchFailure("fetch:timeout", f"{type(exc).__name__} for {current}: {exc}", True) from exc
            except (httpx.TransportError, OSError) as exc:
                raise FetchFailure("fetch:connection", f"{type(exc).__name__}: {exc}", True) from exc
        raise FetchFailure("fetch:too_many_redirects", f"more than {self.max_redirects} redirects from {url}")

    def _read(self, response: httpx.Response, result: FetchResult, final_url: str) -> FetchResult:
        status = response.status_code
        result.status, result.final_url = status, final_url
        if status >= 400:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise FetchFailure(
                f"fetch:http_{status}", f"HTTP {status} from {final_url}", status in TRANSIENT_CODES, retry_after
            )
        if self.respect_robots and robots_disallowed(response.headers.get_list("x-robots-tag")):
            raise FetchFailure("fetch:robots_noai", f"X-Robots-Tag forbids use: {response.headers.get('x-robots-tag')}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailure("fetch:too_large", f"Content-Length {declared} > {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes(64 * 1024):  # DeadlineBackend ends a drip-fed body at the deadline
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchFailure("fetch:too_large", f"body exceeds {self.max_bytes} bytes")
            chunks.append(chunk)
        if size == 0:
            raise FetchFailure("fetch:empty", f"empty body from {final_url}")
        result.data = b"".join(chunks)
        result.content_type = response.headers.get("content-type")
        result.reason = result.detail = None
        return result


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class S3Reader:
    """Reads ``s3://bucket/key`` objects with boto3, configured from the ``s3_*`` settings."""

    def __init__(self, settings: Settings, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.settings)
        return self._client

    def read(self, uri: str) -> bytes:
        """The object's bytes; raises :class:`FetchFailure` with an ``fetch:s3_*`` reason."""
        from botocore.exceptions import BotoCoreError, ClientError

        parts = urlsplit(uri)
        bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
        try:
            obj = self.client.get_object(Bucket=bucket, Key=key)
            if obj.get("ContentLength", 0) > self.max_bytes:
                raise FetchFailure("fetch:too_large", f"{uri} is {obj['ContentLength']} bytes")
            return obj["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            reason = "fetch:s3_not_found" if code in ("NoSuchKey", "404", "NoSuchBucket") else "fetch:s3_error"
            raise FetchFailure(reason, f"{uri}: {code}") from exc
        except BotoCoreError as exc:
            raise FetchFailure("fetch:s3_error", f"{uri}: {exc}") from exc


def make_s3_client(settings: Settings, *, attempts: int = 3, timeout: float | None = None) -> Any:
    """A boto3 S3 client from the ``s3_*`` settings (SigV4; path-style addressing for a custom endpoint);
    ``timeout`` bounds connecting and each read (botocore's defaults otherwise)."""
    import boto3
    from botocore.config import Config

    waits = {"connect_timeout": timeout, "read_timeout": timeout} if timeout is not None else {}
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=reveal(settings.s3_secret_key),
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            retries={"max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            **waits,
        ),
    )


def read_local(uri: str, max_bytes: int = DEFAULT_MAX_BYTES, root: str | None = None) -> bytes:
    """Bytes of a local path or ``file://`` URI; raises :class:`FetchFailure` on failure.

    With ``root``, the path must resolve under it and is opened without following symlinks (see
    pipeline/sources/confine.py); anything but a regular file is refused (a FIFO would block forever).
    """
    path = local_path(uri)
    try:
        fd = open_confined(path, root) if root is not None else open_regular(path)
        try:
            size = check_regular(fd, path).st_size
            if size > max_bytes:
                raise FetchFailure("fetch:too_large", f"{path} is {size} bytes")
            chunks, left = [], size + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    except Refused as refused:
        raise FetchFailure(refused.reason, refused.detail) from refused
    except FileNotFoundError as exc:
        raise FetchFailure("fetch:not_found", f"no such file: {path}") from exc
    except OSError as exc:
        raise FetchFailure("fetch:io_error", f"{type(exc).__name__}: {exc}") from exc
    data = b"".join(chunks)
    if len(data) > max_bytes:  # grew while being read
        raise FetchFailure("fetch:too_large", f"{path} is over {max_bytes} bytes")
    return data


class ReadStage(Stage):
    """Fills ``record.data`` from http(s) URLs (fetched concurrently), local paths / ``file://`` and ``s3://``.

    ``concurrency`` is the number of fetches in flight per process: 8 keeps a loopback or LAN server
    busy while costing a third less CPU than 16 (fewer threads contending for the GIL); the ingest
    job overlaps each chunk's fetch with the decoding of the previous one, so latency is hidden anyway.
    A record's local path is read confined to its ``local_root``; with ``confine`` (the ingest pipeline)
    a record without one reads no local file at all. ``proxy``: the source's own proxy (``options.proxy``);
    the environment's proxy variables are never used.
    """

    name = "read"

    def __init__(
        self,
        fetcher: HttpFetcher | None = None,
        *,
        allow_private: bool = False,
        settings: Settings | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        concurrency: int = 8,
        confine: bool = False,
        proxy: str | None = None,
    ) -> None:
        super().__init__()
        self._fetcher = fetcher
        self.proxy = proxy
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        self.settings = settings
        self.confine = confine
        self._s3: S3Reader | None = None

    @property
    def fetcher(self) -> HttpFetcher:
        if self._fetcher is None:
            timing = {}
            if self.settings is not None:
                timing = {"timeout": self.settings.fetch_timeout_s, "deadline": self.settings.fetch_deadline_s}
            self._fetcher = HttpFetcher(
                allow_private=self.allow_private,
                max_bytes=self.max_bytes,
                concurrency=self.concurrency,
                proxy=self.proxy,
                **timing,
            )
        return self._fetcher

    def _run(self, live: list[Record]) -> None:
        web = [r for r in live if r.uri.startswith(("http://", "https://")) and r.data is None]
        if web:
            for record, result in zip(web, self.fetcher.fetch_many([r.uri for r in web]), strict=True):
                if result.ok:
                    record.data = result.data
                    record.meta.setdefault("http", {}).update(status=result.status, final_url=result.final_url)
                else:
                    record.drop(result.reason or "fetch:error", result.detail)
        super()._run([r for r in live if r.data is None and not r.dropped])

    def process(self, record: Record) -> Record:
        try:
            if record.uri.startswith("s3://"):
                if self._s3 is None:
                    if self.settings is None:
                        raise ConfigError("reading s3:// items needs the settings (S3 endpoint and credentials)")
                    self._s3 = S3Reader(self.settings, self.max_bytes)
                record.data = self._s3.read(record.uri)
            elif is_local(record.uri):
                if self.confine and not record.local_root:
                    record.drop("read:scheme_refused", f"this source may not read local files: {record.uri[:200]}")
                    return record
                record.data = read_local(record.uri, self.max_bytes, record.local_root)
            else:
                record.drop("fetch:unsupported_scheme", f"cannot read {record.uri[:200]}")
        except FetchFailure as failure:
            record.drop(failure.reason, failure.detail)
        return record
