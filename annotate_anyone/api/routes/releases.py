"""Published dataset releases."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from annotate_anyone.api.deps import SessionDep
from annotate_anyone.api.schemas import ReleaseOut
from annotate_anyone.db.models import Release
from annotate_anyone.services import releases

router = APIRouter(prefix="/releases", tags=["releases"])


@router.get("", response_model=list[ReleaseOut], summary="List releases, newest first")
def list_releases(session: SessionDep, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> Any:
    return releases.list_releases(session, limit=limit, offset=offset)


@router.get("/{version}", response_model=ReleaseOut, summary="One release")
def get_release(version: str, session: SessionDep) -> Release:
    return releases.get_release(session, version)
