"""Jobs: every long action is a row with progress; handlers plan units of work and run them.

A job runs in three steps, the same whichever executor runs it:

1. ``plan`` (once): decide the units of work (e.g. batches of item ids) and set ``total``;
2. ``run_unit`` (per unit, possibly concurrently, possibly retried): must be idempotent;
3. ``finish`` (once, by whichever unit completes the job): final counters and status.

While it plans or runs a unit, a job has a **heartbeat** (``heartbeat_at``, every ``job_heartbeat_s``).
A job silent for ``job_stale_s`` is reclaimed (:func:`reclaim_stale`): in service mode its units are
queued again (every unit is idempotent); in the embedded profile, where its process is gone, it becomes
``interrupted`` and ``annotate-anyone run JOB`` resumes it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from annotate_anyone import logs
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.db.models import Job, JobStatus, Source
from annotate_anyone.errors import Conflict, InvalidInput, NotFound
from annotate_anyone.settings import Settings

Unit = list[int]
LIVE = (JobStatus.queued, JobStatus.running)
logger = logging.getLogger(__name__)


class AlreadyRunning(Conflict):
    """Another live job holds a source this job would list; ``holder`` is that job's id."""

    def __init__(self, message: str, holder: int) -> None:
        super().__init__(message)
        self.holder = holder


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
    from annotate_anyone.review import service  # noqa: F401  (registers review_push, review_sync)
    from annotate_anyone.services import (
        ingest,  # noqa: F401
        job_kinds,  # noqa: F401
    )


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


def reclaim_stale(settings: Settings, requeue: Callable[[int], None] | None = None) -> dict[str, list[int]]:
    """Reclaim the jobs whose heartbeat stopped for ``job_stale_s``.

    With ``requeue`` (service mode: the executor's ``submit``), each stale running job gets a fresh
    heartbeat and is queued again: its plan re-lists the units not done, which the workers redo
    (idempotently). Without (embedded: the process that ran it is gone), stale running jobs are marked
    ``interrupted`` and release their sources. Queued jobs are left alone (a broker, or a CLI running
    several jobs in turn, holds them; ``annotate-anyone run JOB`` starts one nobody will).
    """
    cutoff = stale_before(settings)
    silent = or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.created_at < cutoff))
    with session_scope(settings.db_url) as session:
        stale = list(session.scalars(select(Job.id).where(Job.status == JobStatus.running, silent).order_by(Job.id)))
    done: list[int] = []
    for job_id in stale:
        with session_scope(settings.db_url) as session:
            guard = update(Job).where(Job.id == job_id, Job.status == JobStatus.running, silent)
            if requeue:
                if session.execute(guard.values(heartbeat_at=utcnow())).rowcount:
                    done.append(job_id)
                continue
            note = f"interrupted: no heartbeat since {cutoff:%Y-%m-%d %H:%M:%S} UTC or before (its process died?); "
            note += f"resume with `annotate-anyone run {job_id}`"
            if session.execute(guard.values(status=JobStatus.interrupted, error=note, finished_at=utcnow())).rowcount:
                release_claims(session, job_id)
                done.append(job_id)
    if requeue:
        for job_id in done:
            logs.event(logger, "job.requeued", logging.WARNING, job_id=job_id, why="no heartbeat")
            requeue(job_id)
        return {"requeued": done, "interrupted": []}
    for job_id in done:
        logs.event(logger, "job.interrupted", logging.WARNING, job_id=job_id, why="no heartbeat")
    return {"requeued": [], "interrupted": done}


def plan_job(job_id: int, settings: Settings) -> list[Unit]:
    """Step 1: mark the job running and return its units. Re-planning a running job re-lists its units,
    and so does planning an ``interrupted`` one (resuming it). Raises :class:`AlreadyRunning` (the job stays
    as it was) when another live job holds one of its sources."""
    with session_scope(settings.db_url) as session:
        status = get_job(session, job_id).status
    if status in (JobStatus.cancelled, JobStatus.succeeded, JobStatus.failed):
        return []
    with logs.log_context(job_id=job_id), heartbeat(job_id, settings), session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        units = handler_for(job.kind).plan(session, job, settings)  # errors propagate: the caller retries or fails
        job.status = JobStatus.running
        job.started_at = job.started_at or utcnow()
        job.finished_at = None
        job.error = None
        job.result = {**(job.result or {}), "units": len(units)}
        kind, total = job.kind, job.total
    logs.event(logger, "job.started", job_id=job_id, kind=kind, units=len(units), total=total, was=status.value)
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
    with logs.log_context(job_id=job_id, unit=unit_label(unit)):
        with heartbeat(job_id, settings):
            stats = handler.run_unit(job, unit, settings)
        logs.event(logger, "unit.done", logging.DEBUG, kind=job.kind, **{k: v for k, v in stats.items() if k != "kind"})
        return {**stats, "follow_up": finish_if_complete(job_id, settings)}


def unit_label(unit: Unit) -> str:
    """How logs name a unit: ``first-last-count`` of its ids (the ``unit_key`` of job_kinds)."""
    return f"{unit[0]}-{unit[-1]}-{len(unit)}" if unit else "empty"


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
        release_claims(session, job_id)
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
        kind, started = job.kind, job.started_at
    seconds = None
    if started is not None:
        seconds = round((utcnow() - (started if started.tzinfo else started.replace(tzinfo=UTC))).total_seconds(), 3)
    logs.event(
        logger, "job.finished", job_id=job_id, kind=kind, done=done, failed=failed, seconds=seconds, follow_up=follow_up
    )
    return follow_up


def _fail(settings: Settings, job_id: int, exc: BaseException) -> None:
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        job.status = JobStatus.failed
        job.error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc)[-3:])
        job.finished_at = utcnow()
        release_claims(session, job_id)
        kind = job.kind
    logs.event(logger, "job.failed", logging.ERROR, job_id=job_id, kind=kind, error=f"{type(exc).__name__}: {exc}")


def refuse_already_running(job_id: int, settings: Settings, exc: AlreadyRunning) -> None:
    """End a job that found its source held by another (the embedded CLI reports it, exit 2)."""
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        job.status = JobStatus.cancelled
        job.error = str(exc)
        job.result = {**(job.result or {}), "already_running": exc.holder}
        job.finished_at = utcnow()
    logs.event(logger, "job.refused", logging.WARNING, job_id=job_id, held_by=exc.holder)


def fail_job(job_id: int, settings: Settings, exc: BaseException) -> None:
    """Record a job as failed with the error (used when retries are exhausted)."""
    _fail(settings, job_id, exc)
