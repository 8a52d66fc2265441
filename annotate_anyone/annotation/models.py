"""Tables of the annotation engine (migration 0002): model predictions, features, model versions,
calibrations, the gold set, flywheel rounds, and the review tasks routing queues for humans. ``Attribute`` rows
(catalog/models.py) hold the routed labels; ``ModelPrediction`` rows hold every model's raw answer, the evidence
calibration and the gate read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from annotate_anyone.db.base import Base, utcnow


class ModelPrediction(Base):
    """One model's answer for one (person, category): raw distribution and value."""

    __tablename__ = "model_predictions"
    __table_args__ = (
        UniqueConstraint("person_id", "group", "key", "model_version", name="uq_model_predictions_identity"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    group: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    value: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    distribution: Mapped[dict[str, Any]] = mapped_column(default=dict)
    taxonomy_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PersonFeature(Base):
    """A person's feature vector from one extractor (``handmade-1``, ``vlm:<version>``)."""

    __tablename__ = "person_features"
    __table_args__ = (UniqueConstraint("person_id", "extractor", name="uq_person_features_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    extractor: Mapped[str] = mapped_column(String(128))
    vector: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelModel(Base):
    """A model version the engine knows (offline labeler, VLM, a head bank, a parser)."""

    __tablename__ = "label_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # offline | vlm | heads | parser
    storage_key: Mapped[str | None] = mapped_column(Text, default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalibrationRecord(Base):
    """Calibration of one category for one model version, with its reliability and threshold."""

    __tablename__ = "calibrations"
    __table_args__ = (UniqueConstraint("model_version", "group", "key", name="uq_calibrations_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    group: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n: Mapped[int] = mapped_column(Integer, default=0)
    accuracy: Mapped[float] = mapped_column(Float, default=0.0)
    ece_before: Mapped[float] = mapped_column(Float, default=0.0)
    ece: Mapped[float] = mapped_column(Float, default=0.0)
    threshold: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GoldPerson(Base):
    """A person in the held-out gold set: humans label it whole; its labels only measure models."""

    __tablename__ = "gold_persons"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), unique=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlywheelRound(Base):
    """One annotation round: when it ran, which models it used and its report snapshot."""

    __tablename__ = "flywheel_rounds"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    models: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReviewTask(Base):
    """A unit of human work (attribute review, parsing correction, box check) and its external id. Routing queues
    them (``annotation.service``); review pushes them to the backend and settles their answers."""

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
