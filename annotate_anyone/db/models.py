"""The typed ORM models. Schema changes go through a new Alembic migration, never an edited one."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from annotate_anyone.db.base import Base, utcnow


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


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


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"  # its process died (heartbeat stopped); ``annotate-anyone run JOB`` resumes it


class Role(enum.StrEnum):
    admin = "admin"
    engineer = "engineer"
    annotator = "annotator"
    trainer = "trainer"


class Source(Base):
    """Where images come from; ``cursor`` lets a re-scan pick up only what is new."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[SourceKind] = mapped_column(_enum(SourceKind))
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
    status: Mapped[ItemStatus] = mapped_column(_enum(ItemStatus), default=ItemStatus.pending)
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
    status: Mapped[ImageStatus] = mapped_column(_enum(ImageStatus), default=ImageStatus.kept)
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
    origin: Mapped[AttributeOrigin] = mapped_column(_enum(AttributeOrigin), default=AttributeOrigin.model)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    taxonomy_version: Mapped[str] = mapped_column(String(32))
    state: Mapped[AttributeState] = mapped_column(_enum(AttributeState), default=AttributeState.needs_review)
    annotator: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(back_populates="attributes")


class ReviewTask(Base):
    """A unit of human work (attribute review, parsing correction, box check) and its external id."""

    __tablename__ = "review_tasks"
    __table_args__ = (Index("ix_review_tasks_status_kind", "status", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="queued")  # queued, pushed, answered, ...
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    project_ref: Mapped[str | None] = mapped_column(String(64), default=None)
    external_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Job(Base):
    """Every long action is a job row; the CLI, API and dashboard all read progress from here."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.queued)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    counters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)  # last sign of life of its worker

    @property
    def progress(self) -> float:
        """Share of the job's units of work that are done, 0..1."""
        if self.status.value == "succeeded":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0


class JobUnit(Base):
    """A finished unit of a job: makes re-delivered units no-ops and gives progress for unit-based kinds."""

    __tablename__ = "job_units"
    __table_args__ = (UniqueConstraint("job_id", "unit_key", name="uq_job_units_job_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    unit_key: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


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


class ApiKey(Base):
    """An API key: only its hash is stored; ``prefix`` identifies it in lists and logs."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(_enum(Role))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
