"""Human labels: the one place a human answer becomes an ``Attribute`` row and settles the model's labels.

Review's sync (Label Studio answers, weighed by QA) and :func:`annotate_anyone.annotation.service.record_human_label`
(one answer given as free text) both store through :func:`store_human_label`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState

HUMAN_MODEL_VERSION = "human"  # the model_version of human rows


def store_human_label(
    session: Session,
    *,
    person_id: int,
    group: int,
    key: str,
    value: str,
    annotator: str,
    answered_at: datetime,
    taxonomy_version: str,
    confidence: float = 1.0,
    distribution: dict[str, Any] | None = None,
) -> Attribute:
    """Store one human label (idempotent per person, category and annotator) and settle the model's label.

    The human row is ``human_verified``; the model rows of the same category become ``human_verified`` when
    they agree and ``rejected`` when they do not. Calibration and the learned heads read these rows.
    """
    human = session.scalars(
        select(Attribute).where(
            Attribute.person_id == person_id,
            Attribute.group == group,
            Attribute.key == key,
            Attribute.origin == AttributeOrigin.human,
            Attribute.model_version == HUMAN_MODEL_VERSION,
            Attribute.annotator == annotator,
        )
    ).first()
    if human is None:
        human = Attribute(
            person_id=person_id,
            group=group,
            key=key,
            origin=AttributeOrigin.human,
            model_version=HUMAN_MODEL_VERSION,
            annotator=annotator,
            taxonomy_version=taxonomy_version,
            created_at=answered_at,
        )
        session.add(human)
    human.value = value
    human.confidence = confidence
    human.distribution = distribution
    human.state = AttributeState.human_verified
    settle_model_labels(session, person_id=person_id, group=group, key=key, value=value)
    return human


def settle_model_labels(session: Session, *, person_id: int, group: int, key: str, value: str | None) -> None:
    """Mark the model's labels of one category verified (agree) or rejected (disagree); ``None`` re-opens them."""
    for row in session.scalars(
        select(Attribute).where(
            Attribute.person_id == person_id,
            Attribute.group == group,
            Attribute.key == key,
            Attribute.origin == AttributeOrigin.model,
        )
    ):
        if value is None:
            row.state = AttributeState.needs_review
        else:
            row.state = AttributeState.human_verified if row.value == value else AttributeState.rejected
