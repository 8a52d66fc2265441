"""API keys, users and the audit log: admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select

from annotate_anyone.access.models import ApiKey, AuditEvent, User
from annotate_anyone.api import actions
from annotate_anyone.api.auth import AuditReader, KeyManager
from annotate_anyone.api.auth_schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, AuditOut, UserIn, UserOut
from annotate_anyone.api.deps import SessionDep
from annotate_anyone.api.paging import AfterId, page
from annotate_anyone.api.params import Limit, Offset
from annotate_anyone.api.schemas import ErrorBody, Page

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or bad credentials"},
    403: {"model": ErrorBody, "description": "The role may not do this"},
}
router = APIRouter(tags=["admin"], responses=ERRORS)


@router.get("/keys", response_model=Page[ApiKeyOut], summary="List API keys, newest first (never the keys themselves)")
def list_keys(
    session: SessionDep,
    admin: KeyManager,
    revoked: bool = Query(True, description="false: only keys still in use"),
    limit: Limit = 50,
    offset: Offset = 0,
    after_id: AfterId = None,
) -> Any:
    query = select(ApiKey) if revoked else select(ApiKey).where(ApiKey.revoked_at.is_(None))
    return page(session, query, ApiKey.id, limit=limit, offset=offset, after_id=after_id)


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, summary="Create an API key")
def create_key(body: ApiKeyIn, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    key, raw = actions.create_api_key(
        session=session,
        principal=admin,
        request=request,
        name=body.name,
        role=body.role,
        expires_in_days=body.expires_in_days,
    )
    return {**ApiKeyOut.model_validate(key).model_dump(), "key": raw}


@router.post("/keys/{key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key")
def revoke_key(key_id: int, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    return actions.revoke_api_key(session=session, principal=admin, request=request, key_id=key_id)


@router.get("/users", response_model=Page[UserOut], summary="List dashboard users, oldest first")
def list_users(
    session: SessionDep, admin: KeyManager, limit: Limit = 50, offset: Offset = 0, after_id: AfterId = None
) -> Any:
    return page(session, select(User), User.id, limit=limit, offset=offset, after_id=after_id, newest_first=False)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Create a user")
def create_user(body: UserIn, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    return actions.create_user(
        session=session,
        principal=admin,
        request=request,
        username=body.username,
        password=body.password,
        role=body.role,
    )


@router.post("/users/{user_id}/disable", response_model=UserOut, summary="Disable a user and end their sessions")
def disable_user(user_id: int, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    return actions.disable_user(session=session, principal=admin, request=request, user_id=user_id)


@router.get("/audit", response_model=Page[AuditOut], summary="The audit log, newest first")
def list_audit(
    session: SessionDep,
    reader: AuditReader,
    action: str | None = Query(None, max_length=64, examples=["job.cancel"]),
    actor: str | None = Query(None, max_length=160),
    target_type: str | None = Query(None, max_length=32),
    target_id: str | None = Query(None, max_length=128),
    limit: Limit = 50,
    offset: Offset = 0,
    after_id: AfterId = None,
) -> Any:
    query = select(AuditEvent)
    for column, value in (
        (AuditEvent.action, action),
        (AuditEvent.actor, actor),
        (AuditEvent.target_type, target_type),
        (AuditEvent.target_id, target_id),
    ):
        if value:
            query = query.where(column == value)
    return page(session, query, AuditEvent.id, limit=limit, offset=offset, after_id=after_id)
