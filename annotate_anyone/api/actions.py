"""Audited actions from HTTP in one place: the JSON API, the dashboard's forms and the review routes call these,
so each action is done and recorded in the audit log the same way whichever door it came through."""

from __future__ import annotations

from typing import Any

from fastapi import BackgroundTasks, Request
from sqlalchemy.orm import Session

from annotate_anyone import jobs
from annotate_anyone.access import audit, auth
from annotate_anyone.access.models import ApiKey, User
from annotate_anyone.api.auth import client_addr
from annotate_anyone.catalog import browse
from annotate_anyone.catalog.models import Image
from annotate_anyone.executors.base import Executor
from annotate_anyone.jobs import kinds
from annotate_anyone.jobs.models import Job


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
    auth.authorize(principal, kinds.permission(kind))
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


def take_down_image(*, session: Session, principal: Any, request: Request, image_id: int, reason: str) -> Image:
    """Take the image down (it leaves every later release) and record who asked and why."""
    image = browse.take_down_image(session, image_id=image_id, reason=reason, requested_by=principal.actor)
    audit.record(
        session,
        principal=principal,
        action="image.takedown",
        target_type="image",
        target_id=image.id,
        detail={"sha256": image.sha256, "reason": reason},
        remote_addr=client_addr(request),
    )
    return image


def create_api_key(
    *, session: Session, principal: Any, request: Request, name: str, role: str, expires_in_days: float | None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key (shown once, never stored)."""
    key, raw = auth.create_api_key(session, name=name, role=role, expires_in_days=expires_in_days)
    audit.record(
        session,
        principal=principal,
        action="key.create",
        target_type="api_key",
        target_id=key.prefix,
        detail={"role": role, "name": name},
        remote_addr=client_addr(request),
    )
    return key, raw


def revoke_api_key(*, session: Session, principal: Any, request: Request, key_id: int) -> ApiKey:
    key = auth.revoke_api_key(session, key_id)
    audit.record(
        session,
        principal=principal,
        action="key.revoke",
        target_type="api_key",
        target_id=key.prefix,
        remote_addr=client_addr(request),
    )
    return key


def create_user(*, session: Session, principal: Any, request: Request, username: str, password: str, role: str) -> User:
    user = auth.create_user(session, username=username, password=password, role=role)
    audit.record(
        session,
        principal=principal,
        action="user.create",
        target_type="user",
        target_id=user.username,
        detail={"role": role},
        remote_addr=client_addr(request),
    )
    return user


def disable_user(*, session: Session, principal: Any, request: Request, user_id: int) -> User:
    user = auth.disable_user(session, user_id)
    audit.record(
        session,
        principal=principal,
        action="user.disable",
        target_type="user",
        target_id=user.username,
        remote_addr=client_addr(request),
    )
    return user
