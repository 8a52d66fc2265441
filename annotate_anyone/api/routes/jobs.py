"""Jobs: create (queued after commit), list, get with progress, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, status
from sqlalchemy import select

from annotate_anyone import jobs
from annotate_anyone.api import actions
from annotate_anyone.api.auth import CurrentPrincipal, JobCanceller, PoolReader
from annotate_anyone.api.deps import ExecutorDep, SessionDep
from annotate_anyone.api.paging import AfterId, page
from annotate_anyone.api.params import IdPath, Limit, Offset
from annotate_anyone.api.schemas import JobIn, JobOut, Page
from annotate_anyone.jobs.models import Job, JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Start a job")
def create_job(
    body: JobIn,
    session: SessionDep,
    executor: ExecutorDep,
    background: BackgroundTasks,
    principal: CurrentPrincipal,
    request: Request,
) -> Job:
    return actions.start_job(
        session=session,
        executor=executor,
        background=background,
        principal=principal,
        request=request,
        kind=body.kind,
        params=body.params,
    )


@router.get("", response_model=Page[JobOut], summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    principal: PoolReader,
    status_: str | None = Query(
        None, alias="status", pattern="^(queued|running|succeeded|failed|cancelled|interrupted)$"
    ),
    kind: str | None = Query(None, max_length=32),
    limit: Limit = 50,
    offset: Offset = 0,
    after_id: AfterId = None,
) -> Any:
    query = select(Job)
    if status_:
        query = query.where(Job.status == JobStatus(status_))
    if kind:
        query = query.where(Job.kind == kind)
    return page(session, query, Job.id, limit=limit, offset=offset, after_id=after_id)


@router.get("/{job_id}", response_model=JobOut, summary="One job with its progress")
def get_job(job_id: IdPath, session: SessionDep, principal: PoolReader) -> Job:
    return jobs.get_job(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a queued or running job")
def cancel_job(job_id: IdPath, session: SessionDep, principal: JobCanceller, request: Request) -> Job:
    return actions.cancel_job(session=session, principal=principal, request=request, job_id=job_id)
