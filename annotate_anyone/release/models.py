"""Release-side tables: takedowns (what must never be published again)."""

from __future__ import annotations

import enum
from datetime import datetime

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
