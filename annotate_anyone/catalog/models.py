"""Catalog tables: sources, the items they list, images, the persons in them, each person's labels, and
takedowns (what must never enter the pool or a release again).

``Attribute`` rows (a person's routed labels: value, confidence, origin and review state) stay with ``Person``:
they are the catalog's per-person facts that browse, review and releases read and the annotation engine
writes; the engine's own tables (raw predictions, features, model versions) live in ``annotation.models``.
Schema changes go through a new Alembic migration, never an edited one.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from annotate_anyone.db.base import Base, enum_column, utcnow


class SourceKind(enum.StrEnum):
    folder = "folder"
    url_list = "url_list"
    s3_prefix = "s3_prefix"


class ItemStatus(enum.StrEnum):
    pending = "pending"
    kept = "kept"  # passed every filter, an image row exists
    duplicate = "duplicate"  # same bytes (or near-same) as an existing image
    dropped = "dropped"  # a filter dropped it (see reason)
    failed = "failed"  # fetch or read failed (see reason)


class ImageStatus(enum.StrEnum):
    kept = "kept"
    dropped = "dropped"  # dropped after decode (quality, humans, near-duplicate)
    taken_down = "taken_down"


class AttributeOrigin(enum.StrEnum):
    model = "model"
    human = "human"


class AttributeState(enum.StrEnum):
    auto_accepted = "auto_accepted"
    needs_review = "needs_review"
    human_verified = "human_verified"
    rejected = "rejected"


class Source(Base):
    """Where images come from; ``cursor`` lets a re-scan pick up only what is new."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[SourceKind] = mapped_column(enum_column(SourceKind))
    uri: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False)
    taken_down: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_scan_at: Mapped[datetime | None] = mapped_column(default=None)
    # the folder every local read of this source stays in (None: it reads no local file)
    root: Mapped[str | None] = mapped_column(Text, default=None)
    # the ingest job listing this source now; another waits or reports "already running"
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)


class Item(Base):
    """One thing a source listed (a URL, a file, an object), and what became of it."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "uri", name="uq_items_source_uri"),
        # covering the funnel's GROUP BY status, reason: index-only scans
        Index("ix_items_job_status_reason", "job_id", "status", "reason"),
        Index("ix_items_source_status_reason", "source_id", "status", "reason"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    uri: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ItemStatus] = mapped_column(enum_column(ItemStatus), default=ItemStatus.pending)
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class Image(Base):
    """An image is its sha256: one row per distinct original, stored content-addressed."""

    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_status_reason_id", "status", "drop_reason", "id"),  # filtered pages and counts, in id order
        Index("ix_images_source_id_id", "source_id", "id"),  # per-source lists and joins, index-only
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    phash: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    source_uri: Mapped[str] = mapped_column(Text)
    storage_key: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16), default=None)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[ImageStatus] = mapped_column(enum_column(ImageStatus), default=ImageStatus.kept)
    drop_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    persons: Mapped[list[Person]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Person(Base):
    """A person is (image, index): box, keypoints, shot type, and the keys of its mask and parsing map."""

    __tablename__ = "persons"
    __table_args__ = (UniqueConstraint("image_id", "index", name="uq_persons_image_index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer, default=0)
    box: Mapped[list[Any]] = mapped_column(default=list)  # [x0, y0, x1, y1] in original pixels
    score: Mapped[float] = mapped_column(Float, default=0.0)
    keypoints: Mapped[list[Any] | None] = mapped_column(default=None)  # [[x, y, visibility], ...]
    face_boxes: Mapped[list[Any] | None] = mapped_column(default=None)
    shot_type: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    mask_key: Mapped[str | None] = mapped_column(Text, default=None)
    parsing_key: Mapped[str | None] = mapped_column(Text, default=None)
    parsing_model: Mapped[str | None] = mapped_column(String(128), default=None)
    caption: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="persons")
    attributes: Mapped[list[Attribute]] = relationship(back_populates="person", cascade="all, delete-orphan")


class Attribute(Base):
    """A label is (person, group, key, origin, model version): value, confidence and review state."""

    __tablename__ = "attributes"
    __table_args__ = (
        UniqueConstraint(
            "person_id", "group", "key", "origin", "model_version", "annotator", name="uq_attributes_identity"
        ),
        Index("ix_attributes_state_key", "state", "key"),
        Index("ix_attributes_key_value", "key", "value"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    group: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(String(128), default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    distribution: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    origin: Mapped[AttributeOrigin] = mapped_column(enum_column(AttributeOrigin), default=AttributeOrigin.model)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    taxonomy_version: Mapped[str] = mapped_column(String(32))
    state: Mapped[AttributeState] = mapped_column(enum_column(AttributeState), default=AttributeState.needs_review)
    annotator: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(back_populates="attributes")


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
