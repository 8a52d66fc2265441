"""API keys, users and the audit log: admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, status

from annotate_anyone.api.auth import AuditReader, KeyManager, client_addr
from annotate_anyone.api.auth_schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, AuditOut, UserIn, UserOut
from annotate_anyone.api.deps import SessionDep
from annotate_anyone.api.schemas import ErrorBody, Page
from annotate_anyone.services import audit, auth

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or bad credentials"},
    403: {"model": ErrorBody, "description": "The role may not do this"},
}
router = APIRouter(tags=["admin"], responses=ERRORS)


@router.get("/keys", response_model=list[ApiKeyOut], summary="List API keys (never the keys themselves)")
def list_keys(session: SessionDep, admin: KeyManager) -> Any:
    return auth.list_api_keys(session)


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, summary="Create an API key")
def create_key(body: ApiKeyIn, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    key, raw = auth.create_api_key(session, name=body.name, role=body.role, expires_in_days=body.expires_in_days)
    audit.record(
        session,
        principal=admin,
        action="key.create",
        target_type="api_key",
        target_id=key.prefix,
        detail={"role": body.role, "name": body.name},
        remote_addr=client_addr(request),
    )
    return {**ApiKeyOut.model_validate(key).model_dump(), "key": raw}


@router.post("/keys/{key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key")
def revoke_key(key_id: int, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    key = auth.revoke_api_key(session, key_id)
    audit.record(
        session,
        principal=admin,
        action="key.revoke",
        target_type="api_key",
        target_id=key.prefix,
        remote_addr=client_addr(request),
    )
    return key


@router.get("/users", response_model=list[UserOut], summary="List dashboard users")
def list_users(session: SessionDep, admin: KeyManager) -> Any:
    return auth.list_users(session)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Create a user")
def create_user(body: UserIn, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    user = auth.create_user(session, username=body.username, password=body.password, role=body.role)
    audit.record(
        session,
        principal=admin,
        action="user.create",
        target_type="user",
        target_id=user.username,
        detail={"role": body.role},
        remote_addr=client_addr(request),
    )
    return user


@router.post("/users/{user_id}/disable", response_model=UserOut, summary="Disable a user and end their sessions")
def disable_user(user_id: int, session: SessionDep, admin: KeyManager, request: Request) -> Any:
    user = auth.disable_user(session, user_id)
    audit.record(
        session,
        principal=admin,
        action="user.disable",
        target_type="user",
        target_id=user.username,
        remote_addr=client_addr(request),
    )
    return user


@router.get("/audit", response_model=Page[AuditOut], summary="The audit log, newest first")
def list_audit(
    session: SessionDep,
    reader: AuditReader,
    action: str | None = Query(None, max_length=64, examples=["job.cancel"]),
    actor: str | None = Query(None, max_length=160),
    target_type: str | None = Query(None, max_length=32),
    target_id: str | None = Query(None, max_length=128),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> Any:
    rows, total = audit.list_events(
        session, action=action, actor=actor, target_type=target_type, target_id=target_id, limit=limit, offset=offset
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset, "has_more": offset + len(rows) < total}
