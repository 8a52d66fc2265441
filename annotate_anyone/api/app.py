"""The FastAPI application: routers, error mapping, and the web dashboard's static files."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from annotate_anyone import __version__
from annotate_anyone.api.limits import RequestLimits
from annotate_anyone.api.observe import RequestObserver
from annotate_anyone.api.routes import auth, health, images, jobs, keys, releases, review, sources, web
from annotate_anyone.api.templating import WEB
from annotate_anyone.errors import AnnotateAnyoneError
from annotate_anyone.settings import Settings, get_settings

AUTH_RESPONSES = {
    "401": ("No, wrong, expired or revoked credentials", "unauthorized", "authentication required"),
    "403": (
        "The caller's role may not do this (or a form's CSRF token is missing)",
        "forbidden",
        "role 'trainer' may not pool:read",
    ),
    "429": ("Rate limit reached; see Retry-After", "rate_limited", "too many requests; retry in 0.5 s"),
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Per server process, once imports are done: move every object alive now into the permanent GC
    generation, so full collections stop walking them (measured: 70-90 ms pauses on list pages before).
    Embedded, jobs whose process died are reclaimed now and every ``job_stale_s / 2`` (see jobs/recovery)."""
    gc.collect()
    gc.freeze()
    settings: Settings = app.state.settings
    recovering = asyncio.create_task(_recover_periodically(settings)) if settings.executor_name == "inline" else None
    yield
    if recovering is not None:
        recovering.cancel()


async def _recover_periodically(settings: Settings) -> None:
    from annotate_anyone.jobs.recovery import recover

    while True:
        try:
            await asyncio.to_thread(recover, settings)
        except Exception:  # e.g. a home not initialised yet: the API answers what it can meanwhile
            logging.getLogger(__name__).warning("job recovery failed", exc_info=True)
        await asyncio.sleep(max(1.0, settings.job_stale_s / 2))


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail}, headers=headers)


def _wants_page(request: Request) -> bool:
    return request.url.path.startswith("/ui")


def _project_error_response(request: Request, exc: AnnotateAnyoneError) -> Response:
    """Every project error carries its status, body name and headers (annotate_anyone.errors)."""
    status, name = exc.status_code, exc.error
    if _wants_page(request):
        if status == 401:  # a page asks for a login instead
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        from annotate_anyone.api.templating import render

        return render(request, "error.html", {"status": status, "error": name, "detail": str(exc)}, status_code=status)
    return _error(status, name, str(exc), exc.http_headers())


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema, with the error bodies of authentication on every protected operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not operation.get("security"):
                continue
            for code, (description, error, detail) in AUTH_RESPONSES.items():
                operation.setdefault("responses", {}).setdefault(
                    code,
                    {
                        "description": description,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"},
                                "example": {"error": error, "detail": detail},
                            }
                        },
                    },
                )
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorBody",
        {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
    )
    app.openapi_schema = schema
    return schema


def serve_app() -> FastAPI:
    """The app of one ``serve --workers N`` process (uvicorn's factory): logging as logs.py says, then the app."""
    from annotate_anyone.logs import configure_from_settings

    settings = get_settings()
    configure_from_settings(settings)
    return create_app(settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: the process settings)."""
    app = FastAPI(
        lifespan=_lifespan,
        title="Annotate Anyone",
        version=__version__,
        description=(
            "Data flywheel for human-centric image datasets: ingest, annotate, review, release.\n\n"
            "Authenticate with `Authorization: Bearer <API key>` (keys: `annotate-anyone keys create`) or a "
            'dashboard login. Errors are always `{"error": ..., "detail": ...}`.'
        ),
    )
    app.state.settings = settings or get_settings()

    @app.exception_handler(AnnotateAnyoneError)
    async def _project_error(request: Request, exc: AnnotateAnyoneError) -> Response:
        return _project_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        fields = [{"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])} for e in errors]
        return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": detail, "fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal", "internal server error (see the server log)")

    for module in (health, auth, sources, images, jobs, releases, review, keys, web):
        app.include_router(module.router)
    limits = app.state.settings
    app.add_middleware(
        RequestLimits,
        max_bytes=limits.max_body_bytes,
        max_depth=limits.max_json_depth,
        stream_paths=frozenset({"/review/webhook"}),  # checks its secret before it reads the body
    )
    app.add_middleware(RequestObserver)  # outermost: request id, latency by route, one log line per request
    app.mount("/static", StaticFiles(directory=str(WEB / "static")), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
