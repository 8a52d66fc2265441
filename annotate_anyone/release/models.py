"""Release-side tables: published releases and takedowns (what must never be published again)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from annotate_anyone.db.base import Base, utcnow


class TakedownKind(enum.StrEnum):
    image = "image"  # one image, by the sha256 of its original bytes
    url = "url"  # every image fetched from this URL (now or later)
    source = "source"  # a whole source


class Takedown(Base):
    """A takedown request. Matching images leave every later release and appear in its tombstones."""

    __tablename__ = "takedowns"
    __table_args__ = (Index("ix_takedowns_kind_created", "kind", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[TakedownKind] = mapped_column(
        Enum(TakedownKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
