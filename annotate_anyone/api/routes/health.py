"""Liveness, readiness and version (no authentication: probes call them), and Prometheus metrics (an API key
with ``pool:read``, e.g. ``keys create --role engineer``: Prometheus sends it as ``authorization.credentials``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from annotate_anyone import __version__
from annotate_anyone.api.auth import PoolReader
from annotate_anyone.api.deps import SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers (no dependency is checked)")
def health(settings: SettingsDep) -> dict[str, Any]:
    return {"status": "ok", "profile": settings.profile, "executor": settings.executor_name}


@router.get(
    "/ready",
    summary="Readiness: database, broker, object store and Label Studio (when configured) answer",
    responses={503: {"description": "At least one check is down; the body says which"}},
)
async def ready(settings: SettingsDep) -> JSONResponse:
    from annotate_anyone.api.readiness import readiness

    ok, body = await asyncio.to_thread(readiness, settings)
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
async def metrics(settings: SettingsDep, principal: PoolReader) -> Response:
    from annotate_anyone.api.table_metrics import table_metrics
    from annotate_anyone.metrics import render

    body, content_type = await asyncio.to_thread(render, settings, table_metrics)
    return Response(body, media_type=content_type)


@router.get("/version", summary="Package and schema version")
def version() -> dict[str, str]:
    return {"version": __version__}
