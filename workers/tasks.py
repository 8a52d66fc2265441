"""Thin Celery tasks: each takes ids and calls a service; the services are idempotent."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from annotate_anyone import jobs
from annotate_anyone.executors.celery import RECLAIM, RESCAN, REVIEW_SYNC, RUN_UNIT, START_JOB, CeleryExecutor
from annotate_anyone.jobs.policy import RETRY, retry_or_fail
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings, get_settings
from workers.celery_app import app

log = logging.getLogger(__name__)


@app.task(name=START_JOB, bind=True, max_retries=get_settings().task_max_retries, **RETRY)
def start_job(self: Any, job_id: int) -> int:
    settings = get_settings()
    try:
        units = jobs.plan_job(job_id, settings)
    except Exception as exc:
        _retry_or_fail(self, job_id, None, settings, exc)
        raise
    CeleryExecutor(settings).dispatch_units(job_id, units)
    return len(units)


@app.task(name=RUN_UNIT, bind=True, max_retries=get_settings().task_max_retries, **RETRY)
def run_unit(self: Any, job_id: int, unit: dict[str, Any] | list[int]) -> dict[str, Any]:
    settings = get_settings()
    unit = Unit.from_json(unit)
    try:
        result = jobs.run_unit(job_id, unit, settings)
    except Exception as exc:
        _retry_or_fail(self, job_id, unit, settings, exc)
        raise
    for follow_up in result.get("follow_up", []):
        CeleryExecutor(settings).submit(follow_up)
    return result


def _retry_or_fail(task: Any, job_id: int, unit: Unit | None, settings: Settings, exc: Exception) -> None:
    """Apply the retry policy (:mod:`annotate_anyone.jobs.policy`) with this task's attempt count."""
    retry_or_fail(job_id, unit, settings, exc, attempt=task.request.retries, most=task.max_retries)


@app.task(name=RESCAN)
def rescan_sources() -> list[int]:
    from annotate_anyone.catalog.scheduling import rescan_all

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
    from annotate_anyone.jobs.recovery import recover

    settings = get_settings()
    return recover(settings, requeue=CeleryExecutor(settings).submit)


def preload_models() -> bool:
    """A worker bound to the GPU queue loads its models (and CLIP's prompt embeddings) before its first unit.

    Returns whether it loaded; a failure is logged, not raised: the units then fail with the same clear
    error (and retry) while the worker stays up for the others.
    """
    settings = get_settings()
    gpu = settings.models.gpu_queue
    if not gpu or gpu not in (app.amqp.queues.consume_from or {}):
        return False
    from annotate_anyone.annotation.service import get_engine

    try:
        get_engine(settings.annotation, settings.models)
    except Exception:
        log.exception("model preload failed; units of the %s queue will fail until the models load", gpu)
        return False
    return True


@worker_process_init.connect
def _preload_in_pool_process(**_: Any) -> None:
    preload_models()  # prefork children and the solo pool: each process loads once


@worker_ready.connect
def _recover_on_start(sender: Any = None, **_: Any) -> None:
    if type(getattr(sender, "pool", None)).__module__.endswith("concurrency.thread"):
        preload_models()  # a threads pool shares this process: load once, here
    reclaim_jobs.delay()
