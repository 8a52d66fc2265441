"""Sources and their funnels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from sqlalchemy import select

from annotate_anyone.api.auth import PoolReader, SourceWriter
from annotate_anyone.api.deps import SessionDep, SettingsDep
from annotate_anyone.api.paging import AfterId, page
from annotate_anyone.api.params import IdPath, Limit, Offset
from annotate_anyone.api.schemas import Page, SourceIn, SourceOut
from annotate_anyone.catalog import sources, stats
from annotate_anyone.catalog.models import Source

router = APIRouter(prefix="/sources", tags=["sources"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SourceOut,
    summary="Register a source",
    description="Folders and URL list files are paths on the server: only admins may register them, and only "
    "under a configured source root (`AA_SOURCE_ROOTS`); `allow_private` also needs an admin. A URL list reads "
    'http(s) URLs only, unless its options say `"local": true` (then files under the root too).',
)
def create_source(body: SourceIn, session: SessionDep, settings: SettingsDep, principal: SourceWriter) -> Source:
    return sources.register_source(session, settings, principal, **body.model_dump())


@router.get("", response_model=Page[SourceOut], summary="List sources, oldest first")
def list_sources(
    session: SessionDep, principal: PoolReader, limit: Limit = 50, offset: Offset = 0, after_id: AfterId = None
) -> Any:
    return page(session, select(Source), Source.id, limit=limit, offset=offset, after_id=after_id, newest_first=False)


@router.get("/{source_id}", response_model=SourceOut, summary="One source")
def get_source(source_id: IdPath, session: SessionDep, principal: PoolReader) -> Source:
    return sources.get_source(session, source_id)


@router.get("/{source_id}/funnel", summary="The source's funnel: survivors per step, drops by reason")
def source_funnel(source_id: IdPath, session: SessionDep, principal: PoolReader) -> dict[str, Any]:
    sources.get_source(session, source_id)
    return stats.source_funnel(session, source_id)
