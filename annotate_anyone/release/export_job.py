"""The export job kind: one unit that writes a release. The version is fixed when the job is planned, so a
re-delivered export cannot publish a second version; a release this job already published is not written
again even if its ``job_units`` row was lost."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs import rows, units
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.release.export import export_release
from annotate_anyone.release.models import Release
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store

UNIT = Unit.single("export")


def plan(session: Session, job: Job, settings: Settings) -> list[Unit]:
    if not (job.params or {}).get("version"):
        from annotate_anyone.release.paths import next_version
        from annotate_anyone.release.service import list_published

        existing = set(list_published(open_store(settings=settings))) | set(session.scalars(select(Release.version)))
        job.params = {**(job.params or {}), "version": next_version(existing, date.today())}
    job.total = 1
    return [UNIT]


def run_export(*, job_id: int | None, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write a release from the database (see annotate_anyone.release.export) and return its summary."""
    store = open_store(settings=settings)
    with session_scope(settings.db_url) as session:
        release = export_release(session, store, job_id=job_id, annotation=settings.annotation, **params)
        return {"version": release.version, "manifest_key": release.manifest_key, "counts": release.counts}


def run_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    with session_scope(settings.db_url) as session:
        existing = session.scalar(select(Release).where(Release.version == job.params["version"]))
        if existing is not None and existing.job_id == job.id:  # published, but the unit row was lost
            return {"version": existing.version}
    result = run_export(job_id=job.id, params=job.params, settings=settings)
    with session_scope(settings.db_url) as session:
        units.record(session, job.id, unit.key, result)
        stored = rows.get_job(session, job.id)
        stored.result = {**(stored.result or {}), **units.jsonable(result)}
    return result
