"""Review tables: projects in the backend, answers (one row per backend annotation), annotators, webhook inbox.
The tasks themselves (``review_tasks``, units of human work) are ``annotation.models.ReviewTask``: routing writes
them, review pushes, syncs and settles them.

An answer is an event: the same backend annotation arriving twice (webhook and reconciliation) updates one
row, keyed by ``(project_id, external_id)``; nothing else is ever keyed by arrival.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from annotate_anyone.db.base import Base, utcnow


class ReviewProject(Base):
    """One backend project per (taxonomy version, task kind); ``cursor`` is the reconciliation high-water mark."""

    __tablename__ = "review_projects"
    __table_args__ = (UniqueConstraint("backend", "kind", "taxonomy_version", name="uq_review_projects_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    backend: Mapped[str] = mapped_column(String(32), default="label_studio")
    kind: Mapped[str] = mapped_column(String(32))
    taxonomy_version: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    config_hash: Mapped[str] = mapped_column(String(64))
    cursor: Mapped[str | None] = mapped_column(String(40), default=None)
    last_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewAnswer(Base):
    """One annotator's answer to one task, as the backend last reported it."""

    __tablename__ = "review_answers"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_review_answers_external"),
        Index("ix_review_answers_annotator_status", "annotator", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("review_projects.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(64))
    annotator: Mapped[str] = mapped_column(String(128))
    choices: Mapped[dict[str, Any]] = mapped_column(default=dict)  # category id -> value (attribute review)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)  # box / parsing answers
    lead_time: Mapped[float | None] = mapped_column(Float, default=None)
    answered_at: Mapped[datetime] = mapped_column()
    revision: Mapped[str] = mapped_column(String(40))  # the backend's updated_at: same revision = no-op
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, deleted, cancelled, sent_back
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    gold_total: Mapped[int] = mapped_column(Integer, default=0)
    via: Mapped[str] = mapped_column(String(16), default="reconcile")  # webhook or reconcile (first arrival)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReviewAnnotator(Base):
    """An annotator as the platform sees them; ``flagged`` once their gold accuracy fell below the threshold."""

    __tablename__ = "review_annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(64), default=None)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text, default=None)
    flagged_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewEvent(Base):
    """The webhook inbox: stored as received (fast), processed later by a task; ``processed_at`` marks done."""

    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_pending", "processed_at", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
