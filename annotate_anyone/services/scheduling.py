"""Scheduled work: re-scan every source (Celery beat in service mode, ``annotate-anyone rescan`` embedded)."""

from __future__ import annotations

from sqlalchemy import select

from annotate_anyone.db.base import session_scope
from annotate_anyone.db.models import Source
from annotate_anyone.services.jobs import create_job
from annotate_anyone.settings import Settings


def rescan_all(settings: Settings) -> list[int]:
    """Queue one ingest job per live source; each picks up only what is new since its cursor."""
    with session_scope(settings.db_url) as session:
        sources = session.scalars(select(Source).where(Source.taken_down.is_(False))).all()
        job_ids = [
            create_job(session, kind="ingest", params={"source_ids": [s.id]}, created_by="scheduler").id
            for s in sources
        ]
    return job_ids
