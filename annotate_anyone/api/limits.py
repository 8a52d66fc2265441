"""Request limits enforced before any route parses a body: size (413) and JSON nesting depth (422).

A pure ASGI middleware: a declared ``Content-Length`` over the cap is refused before a byte of the body
is read; a chunked body is read only up to the cap. JSON bodies are scanned for their nesting depth
before the route parses them (Python's parser recurses: 100,000 brackets raised RecursionError, a 500).
Routes in ``stream_paths`` (the webhook, which checks its secret first) read the body themselves: only
the size cap applies on the way, and the route checks the depth (:func:`json_too_deep`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_too_deep(body: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects deeper than ``max_depth`` (brackets inside
    strings do not count). Linear; most bodies are cleared by counting brackets."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


class BodyTooLarge(Exception):
    """Raised by the receive channel of a streamed route once its body passes the cap."""


class RequestLimits:
    """Refuses bodies over ``max_bytes`` (413) and JSON bodies nested deeper than ``max_depth`` (422)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, max_depth: int, stream_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.stream_paths = stream_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        if length is not None:
            if not length.strip().isdigit():
                await _refuse(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(length) > self.max_bytes:
                await _refuse(send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes")
                return
        if scope.get("path") in self.stream_paths:
            await self._streamed(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b"").lower() and json_too_deep(body, self.max_depth):
            await _refuse(send, 422, "invalid_request", f"the JSON body nests deeper than {self.max_depth} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the route read the body itself, counting bytes on the way."""
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise BodyTooLarge(f"the body exceeds {self.max_bytes} bytes")
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(send, 413, "payload_too_large", str(exc))


async def _refuse(send: Send, status: int, error: str, detail: str) -> None:
    payload = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
