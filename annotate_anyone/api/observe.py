"""The API's request observer (pure ASGI, no per-request task): a request id on every request, its latency
in ``aa_http_request_duration_seconds`` by route template, and one ``http.request`` log line.

``X-Request-ID`` is taken from the request when it is a sane token (letters, digits, ``._:-``, up to 128)
and otherwise made up (32 hex); either way it is echoed in the response and is the ``request_id`` of every
log line written while the request runs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotate_anyone import logs
from annotate_anyone.metrics import HTTP_LATENCY

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode()
_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED = "<unmatched>"  # the route label of requests no route matched (keeps the label set bounded)
QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes: logged at DEBUG only

log = logging.getLogger("annotate_anyone.api")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == _HEADER:
            text = value.decode("latin-1").strip()
            if _SANE.match(text):
                return text
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """``/jobs/{job_id}`` rather than ``/jobs/17``: the path of the route that matched."""
    route: Any = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (_HEADER, request_id.encode())]
            await send(message)

        token = logs.bind(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(seconds)
            level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
            logs.event(
                log,
                "http.request",
                level,
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                ms=round(1000 * seconds, 2),
            )
            logs.unbind(token)
