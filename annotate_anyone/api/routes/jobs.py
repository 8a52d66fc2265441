"""Jobs: create (queued after commit), list, get with progress, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Query, status

from annotate_anyone.api.deps import ExecutorDep, SessionDep
from annotate_anyone.api.schemas import JobIn, JobOut
from annotate_anyone.db.models import Job
from annotate_anyone.services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Start a job")
def create_job(body: JobIn, session: SessionDep, executor: ExecutorDep, background: BackgroundTasks) -> Job:
    job = jobs.create_job(session, kind=body.kind, params=body.params)
    session.commit()
    background.add_task(executor.submit, job.id)  # runs after the response, so after the commit
    return job


@router.get("", response_model=list[JobOut], summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    status_: str | None = Query(None, alias="status", pattern="^(queued|running|succeeded|failed|cancelled)$"),
    kind: str | None = Query(None, max_length=32),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Any:
    return jobs.list_jobs(session, status=status_, kind=kind, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, summary="One job with its progress")
def get_job(job_id: int, session: SessionDep) -> Job:
    return jobs.get_job(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a queued or running job")
def cancel_job(job_id: int, session: SessionDep) -> Job:
    return jobs.cancel_job(session, job_id)
