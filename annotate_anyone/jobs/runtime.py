"""The job runtime: every long action is a job row with progress; its kind plans units of work and runs them.

A job runs in three steps, the same whichever executor runs it (:mod:`annotate_anyone.executors`):

1. ``plan`` (once): decide the :class:`~annotate_anyone.jobs.units.Unit` s of work and set ``total``;
2. ``run_unit`` (per unit, possibly concurrently, possibly retried): a unit with a ``job_units`` row is
   skipped, and one that returns gets its row (:mod:`annotate_anyone.jobs.units`), so every unit of every
   kind is idempotent the same way;
3. ``finish`` (once, by whichever unit completes the job): final counters and status.

Kinds are listed in :data:`annotate_anyone.jobs.kinds.KINDS`. While it plans or runs a unit, a job has a
**heartbeat** (``heartbeat_at``, every ``job_heartbeat_s``). A job silent for ``job_stale_s`` is reclaimed
(:func:`reclaim_stale`): in service mode its units are queued again; in the embedded profile, where its
process is gone, it becomes ``interrupted`` and ``annotate-anyone run JOB`` resumes it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import UTC
from typing import Any

from sqlalchemy import and_, or_, select, update

from annotate_anyone import logs
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.jobs import kinds, units
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.jobs.rows import AlreadyRunning, get_job, heartbeat, stale_before
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings

logger = logging.getLogger(__name__)


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
        stale = session.execute(
            select(Job.id, Job.kind).where(Job.status == JobStatus.running, silent).order_by(Job.id)
        ).all()
    done: list[int] = []
    for job_id, kind in stale:
        with session_scope(settings.db_url) as session:
            guard = update(Job).where(Job.id == job_id, Job.status == JobStatus.running, silent)
            if requeue:
                if session.execute(guard.values(heartbeat_at=utcnow())).rowcount:
                    done.append(job_id)
                continue
            note = f"interrupted: no heartbeat since {cutoff:%Y-%m-%d %H:%M:%S} UTC or before (its process died?); "
            note += f"resume with `annotate-anyone run {job_id}`"
            if session.execute(guard.values(status=JobStatus.interrupted, error=note, finished_at=utcnow())).rowcount:
                kinds.release_held(session, job_id, kind)
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
        planned = kinds.steps(job.kind).plan(session, job, settings)  # errors propagate: the caller retries or fails
        job.status = JobStatus.running
        job.started_at = job.started_at or utcnow()
        job.finished_at = None
        job.error = None
        job.result = {**(job.result or {}), "units": len(planned)}
        kind, total = job.kind, job.total
    logs.event(logger, "job.started", job_id=job_id, kind=kind, units=len(planned), total=total, was=status.value)
    if not planned:
        finish_if_complete(job_id, settings, force=True)
    return planned


def run_unit(job_id: int, unit: Unit | dict[str, Any] | list[int], settings: Settings) -> dict[str, Any]:
    """Step 2: run one unit once (a unit already recorded in ``job_units`` is skipped), record it, update
    progress, and finish the job if it is complete.

    ``follow_up`` in the result lists jobs the finished job queued (e.g. an annotation round); the
    caller hands them to its executor.
    """
    unit = Unit.from_json(unit)
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        if job.status != JobStatus.running:
            return {"skipped": job.status.value, "follow_up": []}
        done = units.is_done(session, job_id, unit.key)
        session.expunge(job)
    if done:  # a re-delivered unit
        return {"skipped": "done", "follow_up": finish_if_complete(job_id, settings)}
    with logs.log_context(job_id=job_id, unit=unit.key):
        with heartbeat(job_id, settings):
            stats = kinds.steps(job.kind).run_unit(job, unit, settings)
        with session_scope(settings.db_url) as session:
            units.record(session, job_id, unit.key, stats)
        logs.event(logger, "unit.done", logging.DEBUG, kind=job.kind, **{k: v for k, v in stats.items() if k != "kind"})
        return {**stats, "follow_up": finish_if_complete(job_id, settings)}


def finish_if_complete(job_id: int, settings: Settings, *, force: bool = False) -> list[int]:
    """Recompute progress from the data; the first caller that sees the job complete finishes it.

    Returns the ids of follow-up jobs queued by the job's ``finish`` (empty if it did not finish here).
    """
    with session_scope(settings.db_url) as session:
        job = get_job(session, job_id)
        steps = kinds.steps(job.kind)
        done, failed = steps.progress(session, job)
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
        kinds.release_held(session, job_id, job.kind)
        session.refresh(job)
        follow_up: list[int] = []
        if steps.finish:
            try:
                follow_up = steps.finish(session, job, settings) or []
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
        kinds.release_held(session, job_id, job.kind)
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
