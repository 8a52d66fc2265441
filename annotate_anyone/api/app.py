"""The FastAPI application: routers, error mapping, and the web dashboard's static files."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from annotate_anyone import __version__
from annotate_anyone.api.routes import health, images, jobs, releases, sources
from annotate_anyone.errors import AnnotateAnyoneError, Conflict, InvalidInput, NotFound
from annotate_anyone.settings import Settings, get_settings

STATUS = {NotFound: 404, Conflict: 409, InvalidInput: 422}


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: the process settings)."""
    app = FastAPI(
        title="Annotate Anyone",
        version=__version__,
        description="Data flywheel for human-centric image datasets: ingest, annotate, review, release.",
    )
    app.state.settings = settings or get_settings()

    @app.exception_handler(AnnotateAnyoneError)
    async def _project_error(request: Request, exc: AnnotateAnyoneError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
        return _error(status, type(exc).__name__.lower(), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(422, "invalid_request", detail)

    for module in (health, sources, images, jobs, releases):
        app.include_router(module.router)
    return app
