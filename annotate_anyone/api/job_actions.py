"""Starting and cancelling jobs from HTTP (the JSON API, the dashboard's forms, the review routes) in one place."""

from __future__ import annotations

from typing import Any

from fastapi import BackgroundTasks, Request
from sqlalchemy.orm import Session

from annotate_anyone.api.auth import client_addr
from annotate_anyone.db.models import Job
from annotate_anyone.executors.base import Executor
from annotate_anyone.services import audit, auth, jobs


def start_job(
    *,
    session: Session,
    executor: Executor,
    background: BackgroundTasks,
    principal: Any,
    request: Request,
    kind: str,
    params: dict[str, Any],
) -> Job:
    """Authorize, create, audit and commit the job, then hand it to the executor after the response."""
    auth.authorize(principal, auth.job_perm(kind))
    job = jobs.create_job(session, kind=kind, params=params, created_by=principal.actor)
    audit.record(
        session,
        principal=principal,
        action="job.start",
        target_type="job",
        target_id=job.id,
        detail={"kind": kind, "params": params},
        remote_addr=client_addr(request),
    )
    session.commit()
    background.add_task(executor.submit, job.id)  # runs after the response, so after the commit
    return job


def cancel_job(*, session: Session, principal: Any, request: Request, job_id: int) -> Job:
    """Cancel the job and record who did it."""
    job = jobs.cancel_job(session, job_id)
    audit.record(
        session,
        principal=principal,
        action="job.cancel",
        target_type="job",
        target_id=job.id,
        detail={"kind": job.kind},
        remote_addr=client_addr(request),
    )
    return job
