"""Job rows: create, read, list and cancel jobs; heartbeats; the claim a live ingest job holds on a source."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from annotate_anyone import logs
from annotate_anyone.catalog.models import Source
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.errors import Conflict, NotFound
from annotate_anyone.jobs import kinds
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.settings import Settings

LIVE = (JobStatus.queued, JobStatus.running)
logger = logging.getLogger(__name__)


class AlreadyRunning(Conflict):
    """Another live job holds a source this job would list; ``holder`` is that job's id."""

    def __init__(self, message: str, holder: int) -> None:
        super().__init__(message)
        self.holder = holder


def create_job(session: Session, *, kind: str, params: dict[str, Any], created_by: str | None = None) -> Job:
    """Add a queued job row (the caller commits, then hands the id to an executor)."""
    kinds.check_params(kind, params)
    job = Job(kind=kind, params=params, created_by=created_by)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(
    session: Session, *, status: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0
) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(Job.status == JobStatus(status))
    if kind:
        query = query.where(Job.kind == kind)
    return list(session.scalars(query))


def cancel_job(session: Session, job_id: int) -> Job:
    """Mark a queued or running job cancelled; units not yet started are skipped."""
    job = get_job(session, job_id)
    if job.status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
        raise Conflict(f"job {job_id} already {job.status.value}")
    job.status = JobStatus.cancelled
    job.finished_at = utcnow()
    release_claims(session, job_id)
    logs.event(logger, "job.cancelled", job_id=job_id, kind=job.kind)
    return job


# ------------------------------------------------------------------------------ heartbeat and claims


def beat(job_id: int, settings: Settings) -> None:
    """Record that the job's worker is alive (its own short transaction)."""
    with session_scope(settings.db_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))


@contextmanager
def heartbeat(job_id: int, settings: Settings) -> Iterator[None]:
    """Beat now and every ``job_heartbeat_s`` until the block ends (a daemon thread)."""
    beat(job_id, settings)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.job_heartbeat_s):
            try:
                beat(job_id, settings)
            except Exception:  # a missed beat is not the job's failure; the next one may pass
                logger.warning("job %s: heartbeat failed", job_id, exc_info=True)

    thread = threading.Thread(target=loop, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1.0)


def stale_before(settings: Settings) -> datetime:
    """Jobs whose last heartbeat is older than this are not alive."""
    return utcnow() - timedelta(seconds=settings.job_stale_s)


def claim_source(session: Session, source_id: int, job_id: int, settings: Settings) -> None:
    """Make ``job_id`` the one job listing ``source_id``; raise :class:`AlreadyRunning` while another live
    job holds it. A holder that finished or whose heartbeat went stale is replaced. One atomic UPDATE
    (the holder's heartbeat is committed before it claims, so a concurrent claimer sees it alive)."""
    holder_alive = (
        select(Job.id)
        .where(Job.id == Source.claimed_by, Job.status.in_(LIVE), Job.heartbeat_at >= stale_before(settings))
        .exists()
    )
    claimed = session.execute(
        update(Source)
        .where(
            Source.id == source_id,
            or_(Source.claimed_by.is_(None), Source.claimed_by == job_id, ~holder_alive),
        )
        .values(claimed_by=job_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        holder = session.scalar(select(Source.claimed_by).where(Source.id == source_id))
        if holder is None:  # released between the two statements: try once more
            return claim_source(session, source_id, job_id, settings)
        raise AlreadyRunning(f"already running: job {holder} is ingesting source {source_id}", holder)


def release_claims(session: Session, job_id: int) -> None:
    """Free every source ``job_id`` holds (the job ended)."""
    session.execute(
        update(Source)
        .where(Source.claimed_by == job_id)
        .values(claimed_by=None)
        .execution_options(synchronize_session=False)
    )
