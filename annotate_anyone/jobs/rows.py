"""Job rows: create, read, list and cancel jobs; heartbeats; :class:`AlreadyRunning` (another live job holds what
this one needs: ``catalog.sources.claim_source``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotate_anyone import logs
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
    kinds.release_held(session, job_id, job.kind)
    logs.event(logger, "job.cancelled", job_id=job_id, kind=job.kind)
    return job


# ------------------------------------------------------------------------------------------ heartbeat


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
