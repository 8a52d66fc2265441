"""Scheduled work: re-scan every source (Celery beat in service mode, ``annotate-anyone rescan`` embedded), and
queue an annotation round once enough new persons passed the filters (an ingest job's finish)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Image, ImageStatus, Person, Source
from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.jobs.rows import create_job
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


def unannotated_persons(session: Session) -> int:
    """Persons of kept images that no annotation round has parsed yet."""
    return (
        session.scalar(
            select(func.count(Person.id))
            .join(Image)
            .where(Image.status == ImageStatus.kept, Person.parsing_key.is_(None))
        )
        or 0
    )


def maybe_queue_round(session: Session, settings: Settings) -> int | None:
    """Queue an annotation round once enough new persons passed the filters (the pool's volume threshold).

    Returns the new job's id, or ``None`` (below the threshold, or a round already queued or running).
    """
    if settings.round_threshold <= 0:
        return None
    pending = session.scalar(
        select(func.count(Job.id)).where(Job.kind == "annotate", Job.status.in_([JobStatus.queued, JobStatus.running]))
    )
    new = unannotated_persons(session)
    if pending or new < settings.round_threshold:
        return None
    return create_job(
        session, kind="annotate", params={"trigger": "volume", "new_persons": new}, created_by="scheduler"
    ).id
