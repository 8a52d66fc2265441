"""The annotate job kind: the flywheel round of ``annotation/flywheel.py`` (``open_round``, ``annotate_unit``,
``finish_round``: the steps ``run_round`` runs in one session), spread over job units of persons.

A unit's ``job_units`` row is written in the same transaction as its annotations, so a re-delivered unit
finds it and does nothing (see :mod:`annotate_anyone.jobs.units`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Image, ImageStatus, Person
from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs import units
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store


def persons_in_scope(session: Session, params: dict[str, Any]) -> list[int]:
    """Persons an annotation round covers: given ids, only new (never parsed) ones, or every kept one."""
    if params.get("person_ids"):
        return sorted(int(i) for i in params["person_ids"])
    query = select(Person.id).join(Image).where(Image.status == ImageStatus.kept).order_by(Person.id)
    if params.get("scope", "all") == "new":
        query = query.where(Person.parsing_key.is_(None))
    return list(session.scalars(query))


def plan(session: Session, job: Job, settings: Settings) -> list[Unit]:
    from annotate_anyone.annotation.flywheel import open_round, round_units

    result = dict(job.result or {})
    if "round" not in result:  # first planning: open the round, learn from the answers so far
        result["round"] = open_round(session, open_store(settings=settings), settings=settings).number
        result["persons"] = persons_in_scope(session, job.params)
        job.result = result
    planned = [Unit.batch(ids) for ids in round_units(result["persons"], int(job.params.get("batch_size") or 16))]
    job.total = len(planned)
    return planned


def run_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    from annotate_anyone.annotation.flywheel import annotate_unit

    with session_scope(settings.db_url) as session:
        budget = job.params.get("budget", -1)
        stats = annotate_unit(session, open_store(settings=settings), list(unit.ids), settings=settings, budget=budget)
        units.record(session, job.id, unit.key, stats)  # with the annotations, in one transaction
    return stats


def finish(session: Session, job: Job, settings: Settings) -> list[int]:
    from annotate_anyone.annotation.flywheel import finish_round, merge_unit_stats

    number = (job.result or {}).get("round")
    if number is None:
        return []
    totals = merge_unit_stats(units.results(session, job.id))
    report = finish_round(session, number, totals, settings=settings)
    job.result = {**(job.result or {}), "report": report, "persons": len(job.result.get("persons", []))}
    job.counters = totals
    return []
