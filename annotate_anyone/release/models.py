"""Release-side tables: published releases (takedowns are the catalog's: ``catalog.models.Takedown``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from annotate_anyone.db.base import Base, utcnow


class Release(Base):
    """A published dataset version; the manifest in the object store is the source of truth."""

    __tablename__ = "releases"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    parent_version: Mapped[str | None] = mapped_column(String(64), default=None)
    manifest_key: Mapped[str] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(64), default=None)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
