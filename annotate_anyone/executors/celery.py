"""Celery executor for the service profile: the same units, as thin idempotent tasks.

Tasks take ids only, acknowledge late (a unit whose worker dies is redelivered), are rejected back
to the queue when a pool child is lost, and retry with exponential backoff on errors.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from annotate_anyone.executors.base import Executor
from annotate_anyone.settings import Settings

START_JOB = "aa.start_job"
RUN_UNIT = "aa.run_unit"
RESCAN = "aa.rescan_sources"
REVIEW_SYNC = "aa.review_sync"
RECLAIM = "aa.reclaim_jobs"


def make_celery(settings: Settings) -> Celery:
    """The Celery app, configured from settings (workers/celery_app.py builds the worker's one)."""
    app = Celery("annotate_anyone", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="annotate-anyone",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        beat_schedule={
            "rescan-sources": {"task": RESCAN, "schedule": float(settings.rescan_interval_s)},
            "review-sync": {"task": REVIEW_SYNC, "schedule": float(settings.review_sync_interval_s)},
            "review-sync-full": {"task": REVIEW_SYNC, "schedule": 86400.0, "kwargs": {"full": True}},
            "reclaim-jobs": {"task": RECLAIM, "schedule": max(5.0, settings.job_stale_s / 2)},
        },
    )
    return app


class CeleryExecutor(Executor):
    """Queues ``aa.start_job``; the worker plans the job and fans its units out as ``aa.run_unit``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.app = make_celery(settings)

    def submit(self, job_id: int) -> None:
        self.app.send_task(START_JOB, args=[job_id])

    def dispatch_units(self, job_id: int, units: list[list[int]]) -> None:
        for unit in units:
            self.app.send_task(RUN_UNIT, args=[job_id, unit])

    def ping(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Replies of the live workers (empty when none answers)."""
        return self.app.control.ping(timeout=timeout) or []
