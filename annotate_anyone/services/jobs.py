"""Jobs: every long action is a row with progress; handlers plan units of work and run them.

A job runs in three steps, the same whichever executor runs it:

1. ``plan`` (once): decide the units of work (e.g. batches of item ids) and set ``total``;
2. ``run_unit`` (per unit, possibly concurrently, possibly retried): must be idempotent;
3. ``finish`` (once, by whichever unit completes the job): final counters and status.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.db.models import Job, JobStatus
from annotate_anyone.errors import Conflict, InvalidInput, NotFound
from annotate_anyone.settings import Settings

Unit = list[int]


@dataclass
class JobHandler:
    """How one kind of job plans, runs and finishes. ``progress`` recomputes ``done`` from the data."""

    plan: Callable[[Session, Job, Settings], list[Unit]]
    run_unit: Callable[[Job, Unit, Settings], dict[str, Any]]
    progress: Callable[[Session, Job], tuple[int, int]]  # (done, failed)
    finish: Callable[[Session, Job, Settings], list[int] | None] | None = None  # returns follow-up job ids


HANDLERS: dict[str, JobHandler] = {}


def register(kind: str, handler: JobHandler) -> None:
    HANDLERS[kind] = handler


def handler_for(kind: str) -> JobHandler:
    _load_handlers()
    try:
        return HANDLERS[kind]
    except KeyError as exc:
        raise InvalidInput(f"unknown job kind {kind!r}; known: {', '.join(sorted(HANDLERS))}") from exc


def _load_handlers() -> None:
    """Import the modules that register job kinds (kept lazy so importing services stays cheap)."""
    from annotate_anyone.services import (
        ingest,  # noqa: F401
        job_kinds,  # noqa: F401
    )

    try:
        from annotate_anyone.review import service  # noqa: F401  (registers review_push, review_sync)
    except ImportError:  # the review extra (label-studio-sdk) is not installed
        pass


def create_job(session: Session, *, kind: str, params: dict[str, Any], created_by: str | None = None) -> Job:
    """Add a queued job row (the caller commits, then hands the id to an executor)."""
    handler_for(kind)
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
    return job


def plan_job(job_id: int, settings: Settings) -> list[Unit]:
    """Step 1: mark the job running and return its units. Re-planning a running job re-lists its units."""
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        if job.status in (JobStatus.cancelled, JobStatus.succeeded, JobStatus.failed):
            return []
        units = handler_for(job.kind).plan(session, job, settings)  # errors propagate: the caller retries or fails
        job.status = JobStatus.running
        job.started_at = job.started_at or utcnow()
        job.result = {**(job.result or {}), "units": len(units)}
    if not units:
        finish_if_complete(job_id, settings, force=True)
    return units


def run_unit(job_id: int, unit: Unit, settings: Settings) -> dict[str, Any]:
    """Step 2: run one unit (idempotent), update progress, and finish the job if it is complete.

    ``follow_up`` in the result lists jobs the finished job queued (e.g. an annotation round); the
    caller hands them to its executor.
    """
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        if job.status != JobStatus.running:
            return {"skipped": job.status.value, "follow_up": []}
        session.expunge(job)
    handler = handler_for(job.kind)
    stats = handler.run_unit(job, unit, settings)
    return {**stats, "follow_up": finish_if_complete(job_id, settings)}


def finish_if_complete(job_id: int, settings: Settings, *, force: bool = False) -> list[int]:
    """Recompute progress from the data; the first caller that sees the job complete finishes it.

    Returns the ids of follow-up jobs queued by the job's ``finish`` (empty if it did not finish here).
    """
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        handler = handler_for(job.kind)
        done, failed = handler.progress(session, job)
        session.execute(update(Job).where(Job.id == job_id).values(done=done, failed=failed))
        if job.status != JobStatus.running or (done < job.total and not force):
            return []
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(status=JobStatus.succeeded, finished_at=utcnow())
        ).rowcount
        if not claimed:
            return []
        session.refresh(job)
        follow_up: list[int] = []
        if handler.finish:
            try:
                follow_up = handler.finish(session, job, settings) or []
            except Exception as exc:
                session.rollback()
                _fail(settings, job_id, exc)
                raise
        if follow_up:
            job.result = {**(job.result or {}), "follow_up": follow_up}
    return follow_up


def _fail(settings: Settings, job_id: int, exc: BaseException) -> None:
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        job.status = JobStatus.failed
        job.error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc)[-3:])
        job.finished_at = utcnow()


def fail_job(job_id: int, settings: Settings, exc: BaseException) -> None:
    """Record a job as failed with the error (used when retries are exhausted)."""
    _fail(settings, job_id, exc)
