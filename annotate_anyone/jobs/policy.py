"""Retry and fail policy of a unit (or a plan) that raised: retry until the attempts are spent, then fail
the job. The Celery tasks of ``workers/tasks.py`` apply it (Celery's autoretry makes the retry itself)."""

from __future__ import annotations

import logging

from annotate_anyone import logs
from annotate_anyone.jobs.runtime import fail_job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings

logger = logging.getLogger(__name__)
RETRY = {"autoretry_for": (Exception,), "retry_backoff": 2, "retry_backoff_max": 300, "retry_jitter": True}


def retry_or_fail(
    job_id: int, unit: Unit | None, settings: Settings, exc: Exception, *, attempt: int, most: int
) -> bool:
    """Log the retry about to be made, or fail the job once ``attempt`` reached ``most`` retries.

    Returns whether the job was failed (no retry follows)."""
    error = f"{type(exc).__name__}: {exc}"
    label = unit.key if unit is not None else "plan"
    if attempt >= most:
        logs.event(logger, "unit.gave_up", logging.ERROR, job_id=job_id, unit=label, attempts=attempt + 1, error=error)
        fail_job(job_id, settings, exc)
        return True
    logs.event(logger, "unit.retried", logging.WARNING, job_id=job_id, unit=label, attempt=attempt + 1, error=error)
    return False
