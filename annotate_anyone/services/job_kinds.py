"""Job kinds whose work is one unit: export (and, as they land, annotate, review sync, train)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope
from annotate_anyone.db.models import Job
from annotate_anyone.services import jobs
from annotate_anyone.settings import Settings


def _single_plan(session: Session, job: Job, settings: Settings) -> list[jobs.Unit]:
    job.total = 1
    return [[job.id]]


def _single_progress(session: Session, job: Job) -> tuple[int, int]:
    return (1 if (job.result or {}).get("unit_done") else 0), 0


def _mark_done(job_id: int, settings: Settings, result: dict[str, Any]) -> None:
    with session_scope(settings.db_url) as session:
        job = jobs.get_job(session, job_id)
        job.result = {**(job.result or {}), **result, "unit_done": True}


def _export_unit(job: Job, unit: jobs.Unit, settings: Settings) -> dict[str, Any]:
    from annotate_anyone.services.releases import run_export

    result = run_export(job_id=job.id, params=job.params, settings=settings)
    _mark_done(job.id, settings, result)
    return result


jobs.register("export", jobs.JobHandler(plan=_single_plan, run_unit=_export_unit, progress=_single_progress))
