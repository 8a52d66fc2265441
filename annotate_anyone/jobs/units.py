"""Units of work and the one record that makes each idempotent: a ``job_units`` row per finished unit.

The runtime (:mod:`annotate_anyone.jobs.runtime`) skips a unit whose row exists and writes the row once
the unit returns; a kind whose unit commits its data in one transaction may write the row inside that
transaction (:func:`record`, a no-op when the row is already there), so data and record commit together.
Kinds keep their own item-level guards where those also protect data (ingest: only pending items run;
export: a release already published by this job is not written again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotate_anyone.jobs.models import Job, JobUnit


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of a job: ``key`` names it (unique within the job), ``ids`` are the rows it covers (none for
    a job that is a single unit)."""

    key: str
    ids: tuple[int, ...] = field(default=())

    @classmethod
    def batch(cls, ids: list[int] | tuple[int, ...]) -> Unit:
        """A batch of row ids, keyed ``first-last-count`` (ids sorted ascending)."""
        ids = tuple(int(i) for i in ids)
        return cls(f"{ids[0]}-{ids[-1]}-{len(ids)}" if ids else "empty", ids)

    @classmethod
    def single(cls, name: str) -> Unit:
        """The only unit of a one-unit job (an export, a review push or sync)."""
        return cls(name)

    def to_json(self) -> dict[str, Any]:
        """How a unit travels through a broker (Celery task arguments are JSON)."""
        return {"key": self.key, "ids": list(self.ids)}

    @classmethod
    def from_json(cls, value: Unit | dict[str, Any] | list[int]) -> Unit:
        if isinstance(value, Unit):
            return value
        if isinstance(value, list):  # a message queued by a release before units had keys: a batch of ids
            return cls.batch(value)
        return cls(str(value["key"]), tuple(int(i) for i in value.get("ids") or ()))


def batches(ids: list[int], size: int) -> list[Unit]:
    """``ids`` in units of ``size``."""
    return [Unit.batch(ids[i : i + size]) for i in range(0, len(ids), size)]


def is_done(session: Session, job_id: int, key: str) -> bool:
    return session.scalar(select(JobUnit.id).where(JobUnit.job_id == job_id, JobUnit.unit_key == key)) is not None


def record(session: Session, job_id: int, key: str, result: dict[str, Any]) -> None:
    """Record the unit as finished (a concurrent delivery that recorded it first wins; this is then a no-op)."""
    if is_done(session, job_id, key):
        return
    try:
        with session.begin_nested():
            session.add(JobUnit(job_id=job_id, unit_key=key, result=jsonable(result)))
    except IntegrityError:
        pass


def forget(session: Session, job_id: int) -> None:
    """Drop the job's unit records (its units are to run again; their own guards protect the data)."""
    session.query(JobUnit).filter(JobUnit.job_id == job_id).delete(synchronize_session=False)


def progress(session: Session, job: Job) -> tuple[int, int]:
    """``(done, failed)`` for kinds whose total is their number of units."""
    return session.scalar(select(func.count(JobUnit.id)).where(JobUnit.job_id == job.id)) or 0, 0


def results(session: Session, job_id: int) -> list[dict[str, Any]]:
    return list(session.scalars(select(JobUnit.result).where(JobUnit.job_id == job_id).order_by(JobUnit.id)))


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
