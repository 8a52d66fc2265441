"""The audit log: who started, cancelled or took down what (and who made or revoked keys and users)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.access.auth import Principal
from annotate_anyone.access.models import AuditEvent


def record(
    session: Session,
    *,
    principal: Principal | None,
    action: str,
    target_type: str,
    target_id: str | int,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    remote_addr: str | None = None,
) -> AuditEvent:
    """Append an event in the caller's transaction (so it commits, or not, with the action itself)."""
    event = AuditEvent(
        actor=actor or (principal.actor if principal else "system"),
        role=principal.role.value if principal else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
        remote_addr=remote_addr,
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEvent], int]:
    """A page of events, newest first, and the total matching the filters."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if target_type:
        query = query.where(AuditEvent.target_type == target_type)
    if target_id:
        query = query.where(AuditEvent.target_id == target_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total
