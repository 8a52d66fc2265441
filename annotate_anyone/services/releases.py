"""Releases: the export use case and read access to published versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope
from annotate_anyone.db.models import Release
from annotate_anyone.errors import NotFound
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store


def run_export(*, job_id: int | None, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write a release from the database (see annotate_anyone.release.export) and return its summary."""
    from annotate_anyone.release.export import export_release

    store = open_store(settings=settings)
    with session_scope(settings.db_url) as session:
        release = export_release(session, store, job_id=job_id, annotation=settings.annotation, **params)
        return {"version": release.version, "manifest_key": release.manifest_key, "counts": release.counts}


def list_releases(session: Session, *, limit: int = 50, offset: int = 0) -> list[Release]:
    return list(session.scalars(select(Release).order_by(Release.id.desc()).limit(limit).offset(offset)))


def get_release(session: Session, version: str) -> Release:
    release = session.scalar(select(Release).where(Release.version == version))
    if release is None:
        raise NotFound(f"no release {version!r}")
    return release
