"""Thin Celery tasks: each takes ids and calls a service; the services are idempotent."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from annotate_anyone.executors.celery import RECLAIM, RESCAN, REVIEW_SYNC, RUN_UNIT, START_JOB, CeleryExecutor
from annotate_anyone.services import jobs
from annotate_anyone.settings import get_settings
from workers.celery_app import app

RETRY = {"autoretry_for": (Exception,), "retry_backoff": 2, "retry_backoff_max": 300, "retry_jitter": True}


@app.task(name=START_JOB, bind=True, max_retries=get_settings().task_max_retries, **RETRY)
def start_job(self: Any, job_id: int) -> int:
    settings = get_settings()
    try:
        units = jobs.plan_job(job_id, settings)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            jobs.fail_job(job_id, settings, exc)
        raise
    CeleryExecutor(settings).dispatch_units(job_id, units)
    return len(units)


@app.task(name=RUN_UNIT, bind=True, max_retries=get_settings().task_max_retries, **RETRY)
def run_unit(self: Any, job_id: int, unit: list[int]) -> dict[str, Any]:
    settings = get_settings()
    try:
        result = jobs.run_unit(job_id, unit, settings)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            jobs.fail_job(job_id, settings, exc)
        raise
    for follow_up in result.get("follow_up", []):
        CeleryExecutor(settings).submit(follow_up)
    return result


@app.task(name=RESCAN)
def rescan_sources() -> list[int]:
    from annotate_anyone.services.scheduling import rescan_all

    settings = get_settings()
    job_ids = rescan_all(settings)
    for job_id in job_ids:
        CeleryExecutor(settings).submit(job_id)
    return job_ids


@app.task(name=REVIEW_SYNC, bind=True, max_retries=get_settings().task_max_retries, **RETRY)
def review_sync(self: Any, full: bool = False) -> dict[str, Any]:
    """Reconcile with Label Studio: pull what webhooks missed (``full`` also finds deleted tasks)."""
    from annotate_anyone.review.service import sync_review

    return sync_review(get_settings(), full=full)


@app.task(name=RECLAIM)
def reclaim_jobs() -> dict[str, Any]:
    """Queue again the units of jobs whose heartbeat stopped; clean stale temporary files."""
    from annotate_anyone.services.recovery import recover

    settings = get_settings()
    return recover(settings, requeue=CeleryExecutor(settings).submit)


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    reclaim_jobs.delay()
