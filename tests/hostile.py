"""Helpers of the hostile-input suite (tests/integration/test_hostile.py).

* :class:`LoopbackGuard`: an audit hook that refuses every connection (and name lookup) to anything but
  loopback while active, whatever the code under test allows (``allow_private`` included), and records
  what it refused;
* :class:`DripServer`: a raw-socket HTTP server on 127.0.0.1 that drips headers or bodies one byte at a
  time, redirects off loopback, or serves a JPEG;
* :func:`write_corpus`: hostile files (bombs, truncations, a 1000-frame GIF, CMYK, 16-bit, a file over the
  size cap, things that are not images, symlinks out of the folder, a FIFO, a socket, ...) with the
  outcome each must end with.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from annotate_anyone.pipeline.fetch import DEFAULT_MAX_BYTES

# ------------------------------------------------------------------------------------- the guard


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_ip(host: Any) -> bool:
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return False
    return True


class LoopbackGuard:
    """Refuses non-loopback ``socket.connect`` and ``getaddrinfo`` calls in this process while active.

    Python's audit hooks see every connect the socket module makes (httpx, boto3, redis, asyncio alike)
    and cannot be removed, so one hook is installed for the process and consults :attr:`active`.
    """

    _instance: LoopbackGuard | None = None

    def __init__(self) -> None:
        self.active = False
        self.refused: list[str] = []

    @classmethod
    def get(cls) -> LoopbackGuard:
        if cls._instance is None:
            cls._instance = cls()
            sys.addaudithook(cls._instance._hook)
        return cls._instance

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "socket.connect":
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                self.refused.append(f"connect {address[0]}:{address[1]}")
                raise ConnectionRefusedError(f"hostile-suite guard: no connection to {address[0]} from tests")
        elif event == "socket.getaddrinfo":  # an IP literal needs no lookup; a name would ask a DNS server
            host = args[0]
            if host is not None and not _is_loopback(host) and not _is_ip(host):
                self.refused.append(f"resolve {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"hostile-suite guard: no lookup of {host!r} from tests")

    @contextmanager
    def watching(self) -> Iterator[LoopbackGuard]:
        self.refused.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False


# ---------------------------------------------------------------------------------- drip server

JPEG_SIDE = 64


def jpeg_bytes(seed: int = 0, side: int = JPEG_SIDE) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@dataclass
class DripServer:
    """``/drip-headers`` (headers one byte per ``interval``), ``/drip-body`` (headers at once with a
    Content-Length, then the body one byte per ``interval``), ``/to-private`` and ``/to-public`` (302
    off loopback), ``/ok-N.jpg`` (a JPEG). Connections it still drips to are cut after ``max_s``."""

    interval: float = 0.5
    max_s: float = 120.0
    hits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="drip-accept", daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="drip-conn", daemon=True).start()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        give_up = time.monotonic() + self.max_s
        for byte in data:
            if self._stop.is_set() or time.monotonic() > give_up:
                return
            conn.sendall(bytes([byte]))
            time.sleep(self.interval)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                path = request.split(b" ", 2)[1].decode()
                self.hits.append(path)
                body = jpeg_bytes(int(path.rsplit("-", 1)[-1].split(".")[0]) if path.startswith("/ok-") else 0)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                if path == "/drip-headers":
                    self._drip(conn, head + body)
                elif path == "/drip-body":
                    conn.sendall(head)
                    self._drip(conn, body)
                elif path in ("/to-private", "/to-public"):
                    target = "http://10.255.255.1/x.jpg" if path == "/to-private" else "http://93.184.216.34/x.jpg"
                    conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n".encode())
                else:
                    conn.sendall(head + body)
            except OSError:
                pass  # the client gave up on us: that is the point


# --------------------------------------------------------------------------------------- corpus

ANY = "any"  # ends kept, duplicate or dropped: anything but pending or a crash


def _png(width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 0) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, colour, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _save(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def write_corpus(folder: Path, outside: Path) -> dict[str, str]:
    """Write the hostile folder; returns ``{file name: expected}`` where expected is an exact reason,
    ``"decode:"`` (some decode reason) or :data:`ANY`. ``outside`` gets the files the symlinks point at
    (a secret image, a folder of images)."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    side = 10_000
    good = jpeg_bytes(1)
    files: dict[str, tuple[bytes, str]] = {
        "good.jpg": (good, ANY),
        "copy.jpg": (good, ANY),
        "bomb.png": (_png(side, side, zlib.compress(b"\0" * ((side + 1) * side), 9)), "decode:"),
        "truncated.jpg": (jpeg_bytes(2)[: len(jpeg_bytes(2)) // 2], "decode:"),
        "truncated.png": (_save(Image.new("RGB", (64, 64), "red"), "PNG")[:60], "decode:"),
        "zero-size.png": (_png(0, 64, zlib.compress(b"")), "decode:"),
        "empty.jpg": (b"", "decode:"),
        "text.jpg": (b"this is not an image\n" * 10, "decode:"),
        "html.png": (b"<html><body><img src=x onerror=alert(1)></body></html>", "decode:"),
        "gzip-bomb.png": (gzip.compress(b"\0" * 20_000_000, 9), "decode:"),
        "xxe.png": (
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>',
            "decode:",
        ),
        "cmyk.jpg": (_save(Image.new("CMYK", (64, 64), (0, 128, 255, 0)), "JPEG"), ANY),
        "gray16.png": (_save(Image.new("I;16", (64, 64), 40000), "PNG"), ANY),
        "palette.png": (_save(Image.new("P", (64, 64), 3), "PNG", transparency=3), ANY),
        "tiny.jpg": (_save(Image.new("RGB", (1, 1), "blue"), "JPEG"), ANY),
        "big-icc.jpg": (_save(Image.new("RGB", (64, 64), "green"), "JPEG", icc_profile=os.urandom(60_000)), ANY),
    }
    frames = [Image.new("P", (32, 32), i % 256) for i in range(1000)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    files["frames-1000.gif"] = (gif.getvalue(), ANY)
    expected = {name: want for name, (_, want) in files.items()}
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    with open(folder / "huge.jpg", "wb") as f:  # sparse: over the read cap without writing it
        f.truncate(DEFAULT_MAX_BYTES + 1)
    expected["huge.jpg"] = "fetch:too_large"

    secret = outside / "secret.jpg"
    secret.write_bytes(jpeg_bytes(99))
    (outside / "photos").mkdir(exist_ok=True)
    (outside / "photos" / "other.jpg").write_bytes(jpeg_bytes(98))
    (folder / "escape.jpg").symlink_to(secret)  # a symlink out of the folder
    expected["escape.jpg"] = "read:outside_root"
    (folder / "dotdot.jpg").symlink_to(Path("..") / outside.name / "secret.jpg")  # relative, same target
    expected["dotdot.jpg"] = "read:outside_root"
    (folder / "inside-link.jpg").symlink_to(folder / "good.jpg")  # a symlink that stays inside: fine
    expected["inside-link.jpg"] = ANY  # with good.jpg and copy.jpg: one kept, two duplicates
    (folder / "linked-dir").symlink_to(outside / "photos", target_is_directory=True)  # never descended into
    os.mkfifo(folder / "fifo.jpg")  # a reader that opened it would block forever
    expected["fifo.jpg"] = "read:not_regular_file"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(folder / "socket.png"))
    unix.close()
    expected["socket.png"] = "read:not_regular_file"
    return expected


def spend_tokens(path: str, key: str, n: int, out: Any) -> None:
    """Take ``n`` tokens of ``key`` from the SQLite limiter at ``path`` (run in a child process)."""
    from annotate_anyone.access.ratelimit import SqliteRateLimiter

    limiter = SqliteRateLimiter(path)
    out.put(sum(1 for _ in range(n) if limiter.take(key, capacity=5, rate=0.001) == 0.0))
