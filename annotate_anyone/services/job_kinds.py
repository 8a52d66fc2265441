"""Job kinds beyond ingest: an annotation round (units of persons) and an export (one unit).

The annotate kind is the flywheel round of ``annotation/flywheel.py`` (``open_round``, ``annotate_unit``,
``finish_round``: the steps ``run_round`` runs in one session), spread over job units.

Finished units are recorded in ``job_units``; a re-delivered unit finds its row and does nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope
from annotate_anyone.db.models import Image, ImageStatus, Job, JobUnit, Person, Release
from annotate_anyone.services import jobs
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store


def unit_key(unit: jobs.Unit) -> str:
    return f"{unit[0]}-{unit[-1]}-{len(unit)}"


def _unit_done(session: Session, job_id: int, key: str) -> bool:
    return session.scalar(select(JobUnit.id).where(JobUnit.job_id == job_id, JobUnit.unit_key == key)) is not None


def _record_unit(session: Session, job_id: int, key: str, result: dict[str, Any]) -> None:
    try:
        with session.begin_nested():
            session.add(JobUnit(job_id=job_id, unit_key=key, result=result))
    except IntegrityError:  # a concurrent delivery of the same unit finished first
        pass


def _units_progress(session: Session, job: Job) -> tuple[int, int]:
    return session.scalar(select(func.count(JobUnit.id)).where(JobUnit.job_id == job.id)) or 0, 0


def _unit_results(session: Session, job_id: int) -> list[dict[str, Any]]:
    return [r for r in session.scalars(select(JobUnit.result).where(JobUnit.job_id == job_id))]


# ------------------------------------------------------------------------------------------ annotate


def persons_in_scope(session: Session, params: dict[str, Any]) -> list[int]:
    """Persons an annotation round covers: given ids, only new (never parsed) ones, or every kept one."""
    if params.get("person_ids"):
        return sorted(int(i) for i in params["person_ids"])
    query = select(Person.id).join(Image).where(Image.status == ImageStatus.kept).order_by(Person.id)
    if params.get("scope", "all") == "new":
        query = query.where(Person.parsing_key.is_(None))
    return list(session.scalars(query))


def _annotate_plan(session: Session, job: Job, settings: Settings) -> list[jobs.Unit]:
    from annotate_anyone.annotation.flywheel import open_round, round_units

    result = dict(job.result or {})
    if "round" not in result:  # first planning: open the round, learn from the answers so far
        result["round"] = open_round(session, open_store(settings=settings), settings=settings).number
        result["persons"] = persons_in_scope(session, job.params)
        job.result = result
    units = round_units(result["persons"], int(job.params.get("batch_size") or 16))
    job.total = len(units)
    return units


def _annotate_unit(job: Job, unit: jobs.Unit, settings: Settings) -> dict[str, Any]:
    from annotate_anyone.annotation.flywheel import annotate_unit

    key = unit_key(unit)
    with session_scope(settings.db_url) as session:
        if _unit_done(session, job.id, key):
            return {"skipped": "done"}
        budget = job.params.get("budget", -1)
        stats = annotate_unit(session, open_store(settings=settings), unit, settings=settings, budget=budget)
        _record_unit(session, job.id, key, _jsonable(stats))
    return stats


def _annotate_finish(session: Session, job: Job, settings: Settings) -> list[int]:
    from annotate_anyone.annotation.flywheel import finish_round, merge_unit_stats

    number = (job.result or {}).get("round")
    if number is None:
        return []
    totals = merge_unit_stats(_unit_results(session, job.id))
    report = finish_round(session, number, totals, settings=settings)
    job.result = {**(job.result or {}), "report": report, "persons": len(job.result.get("persons", []))}
    job.counters = totals
    return []


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


jobs.register(
    "annotate",
    jobs.JobHandler(plan=_annotate_plan, run_unit=_annotate_unit, progress=_units_progress, finish=_annotate_finish),
)


# -------------------------------------------------------------------------------------------- export


def _export_plan(session: Session, job: Job, settings: Settings) -> list[jobs.Unit]:
    """One unit. The version is fixed here, so a re-delivered export cannot publish a second version."""
    if not (job.params or {}).get("version"):
        from annotate_anyone.release.layout import next_version
        from annotate_anyone.release.service import list_published

        existing = set(list_published(open_store(settings=settings))) | set(session.scalars(select(Release.version)))
        job.params = {**(job.params or {}), "version": next_version(existing, date.today())}
    job.total = 1
    return [[job.id]]


def _export_unit(job: Job, unit: jobs.Unit, settings: Settings) -> dict[str, Any]:
    from annotate_anyone.services.releases import run_export

    with session_scope(settings.db_url) as session:
        if _unit_done(session, job.id, "export"):
            return {"skipped": "done"}
        existing = session.scalar(select(Release).where(Release.version == job.params["version"]))
        if existing is not None and existing.job_id == job.id:  # published, but the unit row was lost
            _record_unit(session, job.id, "export", {"version": existing.version})
            return {"version": existing.version}
    result = run_export(job_id=job.id, params=job.params, settings=settings)
    with session_scope(settings.db_url) as session:
        _record_unit(session, job.id, "export", _jsonable(result))
        stored = jobs.get_job(session, job.id)
        stored.result = {**(stored.result or {}), **_jsonable(result)}
    return result


jobs.register("export", jobs.JobHandler(plan=_export_plan, run_unit=_export_unit, progress=_units_progress))
