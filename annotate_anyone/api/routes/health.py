"""Liveness and version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from annotate_anyone import __version__
from annotate_anyone.api.deps import SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the database answers")
def health(session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "profile": settings.profile, "executor": settings.executor_name}


@router.get("/version", summary="Package and schema version")
def version() -> dict[str, str]:
    return {"version": __version__}
