"""The one table of job kinds: what each kind plans, runs per unit and finishes, who may start it, and what
parameters it takes. Like ``pipeline/build.py``, each entry names a factory that imports the kind's code when
a job of that kind first runs, so reading the table (the API's kind list, the web form, the permissions)
imports no domain module.

A kind's steps (:class:`Steps`): ``plan(session, job, settings) -> list[Unit]`` sets ``job.total``;
``run_unit(job, unit, settings) -> dict`` does one unit (made idempotent by the runtime's ``job_units``
rows, see :mod:`annotate_anyone.jobs.units`); ``progress(session, job) -> (done, failed)`` recomputes the
counters from the data; ``finish(session, job, settings)`` (optional) returns follow-up job ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from annotate_anyone.access.auth import Perm
from annotate_anyone.errors import InvalidInput
from annotate_anyone.jobs import units
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings


@dataclass(frozen=True, slots=True)
class Steps:
    plan: Callable[[Session, Job, Settings], list[Unit]]
    run_unit: Callable[[Job, Unit, Settings], dict[str, Any]]
    progress: Callable[[Session, Job], tuple[int, int]] = units.progress
    finish: Callable[[Session, Job, Settings], list[int] | None] | None = None


# ------------------------------------------------------------------------------------ parameters


class IngestParams(BaseModel):
    source_ids: list[int] = Field(default_factory=list, examples=[[1]])
    retry_failed: bool = False  # failed items of the sources are tried again
    batch_size: int | None = Field(default=None, ge=1)
    stages: list[str] | None = None  # default: the ``ingest_stages`` setting
    stage_options: dict[str, Any] | None = None
    auto_round: bool = True  # queue an annotation round when enough new persons passed


class AnnotateParams(BaseModel):
    person_ids: list[int] | None = None
    scope: Literal["all", "new"] = "all"
    batch_size: int | None = Field(default=None, ge=1)
    budget: int | None = -1  # review budget of the round (-1: the configured one)
    trigger: str | None = None
    new_persons: int | None = None


class ExportParams(BaseModel):
    version: str | None = None  # default: the next ``YYYY.MM.DD.N``, fixed when the job is planned
    parent: str | None = None
    preset: str = "all-accepted"
    filters: dict[str, Any] | None = None
    shard_size_bytes: int | None = Field(default=None, ge=1)
    image_mode: str | None = None
    expected_error_rate: float | dict[str, float] | None = None
    routing: dict[str, Any] | None = None


class ReviewPushParams(BaseModel):
    kind: Literal["attributes", "parsing", "box"] = "attributes"
    limit: int | None = Field(default=None, ge=1, le=1_000_000)


class ReviewSyncParams(BaseModel):
    full: bool = Field(default=False, description="also list every backend task to find deleted ones")


# ----------------------------------------------------------------------------------------- steps


def _ingest() -> Steps:
    from annotate_anyone.catalog import ingest

    return Steps(plan=ingest.plan, run_unit=ingest.run_unit, progress=ingest.progress, finish=ingest.finish)


def _annotate() -> Steps:
    from annotate_anyone.annotation import round_job

    return Steps(plan=round_job.plan, run_unit=round_job.run_unit, finish=round_job.finish)


def _export() -> Steps:
    from annotate_anyone.release import export_job

    return Steps(plan=export_job.plan, run_unit=export_job.run_unit)


def _review_push() -> Steps:
    from annotate_anyone.review import service

    return Steps(plan=service.plan_review_job, run_unit=service.push_unit)


def _review_sync() -> Steps:
    from annotate_anyone.review import service

    return Steps(plan=service.plan_review_job, run_unit=service.sync_unit)


def _free_sources(session: Session, job_id: int) -> None:
    from annotate_anyone.catalog.sources import release_claims

    release_claims(session, job_id)


# ----------------------------------------------------------------------------------------- table


@dataclass(frozen=True, slots=True)
class Kind:
    steps: Callable[[], Steps]  # imports the kind's code (first run of a job of this kind)
    permission: Perm  # needed to start one
    params: type[BaseModel]  # what ``params`` may hold (checked when the job is created)
    startable: bool = False  # started through ``POST /jobs`` and the dashboard's form
    models: bool = False  # its units run the labelling models (the GPU queue, when configured)
    release: Callable[[Session, int], None] | None = None  # frees what a job holds once it ends (ingest: sources)


KINDS: dict[str, Kind] = {
    "ingest": Kind(_ingest, Perm.jobs_start, IngestParams, startable=True, release=_free_sources),
    "annotate": Kind(_annotate, Perm.jobs_start, AnnotateParams, startable=True, models=True),
    "export": Kind(_export, Perm.exports_start, ExportParams, startable=True),
    "review_push": Kind(_review_push, Perm.jobs_start, ReviewPushParams),
    "review_sync": Kind(_review_sync, Perm.jobs_start, ReviewSyncParams),
}
STARTABLE: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if kind.startable)
MODEL_KINDS: frozenset[str] = frozenset(name for name, kind in KINDS.items() if kind.models)
_STEPS: dict[str, Steps] = {}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError as exc:
        raise InvalidInput(f"unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from exc


def steps(name: str) -> Steps:
    """The kind's steps (its code imported once per process)."""
    if name not in _STEPS:
        _STEPS[name] = kind(name).steps()
    return _STEPS[name]


def permission(name: str) -> Perm:
    """The permission needed to start a job of kind ``name``."""
    return kind(name).permission


def release_held(session: Session, job_id: int, name: str) -> None:
    """Free what job ``job_id`` of kind ``name`` holds, now that it ended (an ingest job: its sources)."""
    found = KINDS.get(name)
    if found is not None and found.release is not None:
        found.release(session, job_id)


def check_params(name: str, params: dict[str, Any]) -> None:
    """Refuse parameters the kind cannot take (the job row keeps them as given)."""
    try:
        kind(name).params.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad params for a {name} job: {problems}") from exc
