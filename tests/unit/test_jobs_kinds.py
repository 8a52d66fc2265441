"""The table of job kinds and the one unit mechanism: what the API, the form and the permissions read from the
table, and that a re-delivered unit of any kind (single or batch) runs once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_type_hints

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone import jobs
from annotate_anyone.access.auth import Perm
from annotate_anyone.api.routes.web import start_job
from annotate_anyone.api.schemas import JobIn
from annotate_anyone.db.base import session_scope
from annotate_anyone.errors import InvalidInput
from annotate_anyone.jobs import kinds
from annotate_anyone.jobs.models import Job, JobStatus, JobUnit
from annotate_anyone.jobs.units import Unit
from annotate_anyone.settings import Settings

RUNS: list[str] = []


class _Params(BaseModel):
    size: int = 1


def _plan(session: Session, job: Job, settings: Settings) -> list[Unit]:
    job.total = 1 if job.params.get("size", 1) == 1 else 2
    return [Unit.single("only")] if job.total == 1 else [Unit.batch([1, 2]), Unit.batch([3])]


def _run(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    RUNS.append(unit.key)
    return {"ids": list(unit.ids)}


@pytest.fixture
def test_kind() -> Iterator[str]:
    kinds.KINDS["t_once"] = kinds.Kind(lambda: kinds.Steps(plan=_plan, run_unit=_run), Perm.jobs_start, _Params)
    RUNS.clear()
    try:
        yield "t_once"
    finally:
        kinds.KINDS.pop("t_once", None)
        kinds._STEPS.pop("t_once", None)


def test_the_api_form_and_permissions_read_the_table() -> None:
    assert set(JobIn.model_json_schema()["properties"]["kind"]["enum"]) == set(kinds.STARTABLE)
    assert set(kinds.STARTABLE) == {"ingest", "annotate", "export"}
    form = get_type_hints(start_job, include_extras=True)["kind"].__metadata__[0]  # the dashboard's form field
    pattern = form.metadata[0].pattern
    assert all(re.fullmatch(pattern, name) for name in kinds.STARTABLE)
    assert not re.fullmatch(pattern, "review_push") and not re.fullmatch(pattern, "nope")
    assert kinds.permission("export") == Perm.exports_start and kinds.permission("ingest") == Perm.jobs_start
    assert kinds.MODEL_KINDS == {"annotate"}
    with pytest.raises(InvalidInput, match="unknown job kind"):
        kinds.permission("nope")


def test_every_kind_has_its_steps() -> None:
    for name in kinds.KINDS:
        steps = kinds.steps(name)
        assert callable(steps.plan) and callable(steps.run_unit) and callable(steps.progress)


def test_params_are_checked_against_the_kind_model(embedded: Settings) -> None:
    with session_scope(embedded.db_url) as session:
        with pytest.raises(InvalidInput, match="source_ids"):
            jobs.create_job(session, kind="ingest", params={"source_ids": "all"})
        job = jobs.create_job(session, kind="ingest", params={"source_ids": [1], "extra": {"kept": True}})
        assert job.params == {"source_ids": [1], "extra": {"kept": True}}  # stored as given


def test_units_travel_as_json() -> None:
    unit = Unit.batch([4, 7, 9])
    assert unit.key == "4-9-3" and Unit.from_json(unit.to_json()) == unit
    assert Unit.single("export") == Unit.from_json({"key": "export", "ids": []})
    assert Unit.from_json([4, 7, 9]) == unit  # a batch queued by an older release, still in the broker


@pytest.mark.parametrize("size", [1, 2])
def test_a_redelivered_unit_runs_once(embedded: Settings, test_kind: str, size: int) -> None:
    with session_scope(embedded.db_url) as session:
        job_id = jobs.create_job(session, kind=test_kind, params={"size": size}).id
    planned = jobs.plan_job(job_id, embedded)
    first = jobs.run_unit(job_id, planned[0], embedded)
    assert first["ids"] == list(planned[0].ids)
    with session_scope(embedded.db_url) as session:  # a delivery after the job went on (or finished)
        jobs.get_job(session, job_id).status = JobStatus.running
    again = jobs.run_unit(job_id, planned[0].to_json(), embedded)
    assert again["skipped"] == "done" and RUNS == [planned[0].key]
    for unit in planned[1:]:
        jobs.run_unit(job_id, unit, embedded)
    with session_scope(embedded.db_url) as session:
        job = jobs.get_job(session, job_id)
        assert (job.status, job.done, job.total) == (JobStatus.succeeded, size, size)
        assert session.scalar(select(func.count(JobUnit.id)).where(JobUnit.job_id == job_id)) == size
