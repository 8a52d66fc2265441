"""Celery executor for the service profile: the same units, as thin idempotent tasks.

Tasks take ids only, acknowledge late (a unit whose worker dies is redelivered), are rejected back
to the queue when a pool child is lost, and retry with exponential backoff on errors.

Queues: everything goes to ``annotate-anyone`` except, when ``AA_MODELS__GPU_QUEUE`` names a queue
(e.g. ``gpu``), the units of model-backed job kinds (:data:`MODEL_KINDS`: annotation rounds), which go
there, so that only workers started with ``annotate-anyone worker --queues gpu`` (where the models and
the accelerator are) run them. Planning such a job goes there too: an annotation round's plan fine-tunes
the VLM on the new human answers and retrains the heads on model features, which is model work.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from annotate_anyone import logs
from annotate_anyone.executors.base import Executor
from annotate_anyone.jobs.kinds import MODEL_KINDS  # job kinds whose units run the labelling models
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings

START_JOB = "aa.start_job"
RUN_UNIT = "aa.run_unit"
RESCAN = "aa.rescan_sources"
REVIEW_SYNC = "aa.review_sync"
RECLAIM = "aa.reclaim_jobs"
DEFAULT_QUEUE = "annotate-anyone"
log = logging.getLogger(__name__)


def unit_queue(settings: Settings, kind: str) -> str | None:
    """The queue of a job kind's units: the GPU queue for model-backed kinds when configured, else None (default)."""
    queue = settings.models.gpu_queue
    return queue if queue and kind in MODEL_KINDS else None


def make_celery(settings: Settings) -> Celery:
    """The Celery app, configured from settings (workers/celery_app.py builds the worker's one)."""
    app = Celery("annotate_anyone", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
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
        """Queue the job's planning: on the GPU queue for model-backed kinds (:func:`unit_queue`)."""
        queue = unit_queue(self.settings, self._kind(job_id)) if self.settings.models.gpu_queue else None
        self.app.send_task(START_JOB, args=[job_id], queue=queue)
        logs.event(log, "job.queued", job_id=job_id, executor="celery", queue=queue or DEFAULT_QUEUE)

    def dispatch_units(self, job_id: int, units: list[Unit], kind: str | None = None) -> None:
        """One ``aa.run_unit`` per unit, on the GPU queue when the job kind runs models (:func:`unit_queue`)."""
        queue = unit_queue(self.settings, kind or self._kind(job_id)) if units else None
        for unit in units:
            self.app.send_task(RUN_UNIT, args=[job_id, unit.to_json()], queue=queue)
        logs.event(log, "units.queued", job_id=job_id, units=len(units), queue=queue or DEFAULT_QUEUE)

    def _kind(self, job_id: int) -> str:
        from annotate_anyone.db.base import session_scope
        from annotate_anyone.jobs.rows import get_job

        with session_scope(self.settings.db_url) as session:
            return get_job(session, job_id).kind

    def ping(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Replies of the live workers (empty when none answers)."""
        return self.app.control.ping(timeout=timeout) or []


def _queues(args: list[str]) -> list[str]:
    """The queue names given to ``celery worker`` as ``-Q a,b``, ``-Qa``, ``--queues a`` or ``--queues=a``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        value = None
        if arg in ("-Q", "--queues") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        if value:
            out.extend(q.strip() for q in value.split(",") if q.strip())
    return out


GPU_THREADS = 4  # units a GPU worker runs at once (threads of one process sharing one model)


def worker_argv(args: list[str], settings: Settings) -> list[str]:
    """``celery worker`` arguments for ``annotate-anyone worker ARGS``.

    A worker that consumes the GPU queue and was given no ``--pool``/``--concurrency`` runs one process
    with :data:`GPU_THREADS` threads: the model is loaded once and the persons of concurrent units are
    batched together (``AA_MODELS__BATCH_SIZE``, ``AA_MODELS__BATCH_WAIT_MS``). With prefork (``--pool
    prefork --concurrency N``) each process loads the model once and batches one unit at a time.
    """
    argv = ["worker", "--loglevel=INFO", *args]
    gpu = settings.models.gpu_queue
    chosen = any(a.startswith(("--pool", "-P", "--concurrency", "-c")) for a in args)
    if gpu and gpu in _queues(args) and not chosen:
        argv += ["--pool=threads", f"--concurrency={GPU_THREADS}"]
    return argv
