"""Adapters to the annotation engine: what a routed task asks, what gold says.

Review reads routing output only through these functions, so the engine can change its payload in one place;
human labels go through the engine's own :func:`annotate_anyone.annotation.human.store_human_label`.

Payload of a ``ReviewTask`` of kind ``attributes`` (as routing writes it)::

    {"taxonomy_version": "cm-1.0",
     "attributes": [{"attribute_id": 12, "group": 6, "key": "color", "value": "red",
                     "confidence": 0.41, "distribution": {"red": 0.41, ...}, "model_version": "..."}]}

``attribute_id`` alone is enough (the rest is read from the row); ``"category": "6.color"`` may replace
``group`` + ``key``. A gold task's payload adds ``"truth": {"6.color": "red", ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import category_id, split_category
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState


@dataclass(frozen=True)
class Routed:
    """One attribute a task asks about, with the model's prediction to pre-fill."""

    group: int
    key: str
    value: str | None
    confidence: float | None
    distribution: dict[str, float]
    model_version: str
    attribute_id: int | None = None

    @property
    def category(self) -> str:
        return category_id(self.group, self.key)


def routed_attributes(session: Session, task: ReviewTask) -> list[Routed]:
    """The attributes routed to humans for ``task`` (adapter over the routing payload)."""
    entries = list((task.payload or {}).get("attributes") or [])
    ids = [e["attribute_id"] for e in entries if isinstance(e, dict) and e.get("attribute_id")]
    rows = {a.id: a for a in session.scalars(select(Attribute).where(Attribute.id.in_(ids)))} if ids else {}
    routed: list[Routed] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"category": entry}
        row = rows.get(entry.get("attribute_id") or -1)
        if "category" in entry:
            group, key = split_category(entry["category"])
        else:
            group, key = int(entry.get("group", row.group if row else 0)), str(entry.get("key", row.key if row else ""))
        if row is None and task.person_id is not None:
            row = session.scalars(
                select(Attribute)
                .where(Attribute.person_id == task.person_id, Attribute.group == group, Attribute.key == key)
                .where(Attribute.origin == AttributeOrigin.model)
                .order_by(Attribute.id.desc())
            ).first()
        routed.append(
            Routed(
                group=group,
                key=key,
                value=entry.get("value", row.value if row else None),
                confidence=entry.get("confidence", row.confidence if row else None),
                distribution=dict(entry.get("distribution") or (row.distribution if row else None) or {}),
                model_version=str(entry.get("model_version", row.model_version if row else "")),
                attribute_id=row.id if row else None,
            )
        )
    return routed


def gold_truth(task: ReviewTask) -> dict[str, str]:
    """A gold task's known answers, category id -> value (empty for other tasks)."""
    return dict((task.payload or {}).get("truth") or {}) if task.is_gold else {}


def sync_gold_templates(session: Session, *, max_questions: int = 5) -> int:
    """One gold template task per gold-set person whose human-verified labels give the truth (idempotent).

    Truth comes from the person's ``human_verified`` human labels; the model's labels of the same
    categories (when present) pre-fill the task, so a gold task looks like any other.
    """
    from annotate_anyone.annotation.models import GoldPerson

    have = set(
        session.scalars(
            select(ReviewTask.person_id).where(
                ReviewTask.is_gold.is_(True),
                ReviewTask.status.in_(("gold", "withdrawn")),  # withdrawn: image gone
            )
        )
    )
    made = 0
    for person_id in session.scalars(select(GoldPerson.person_id).order_by(GoldPerson.id)):
        if person_id in have:
            continue
        humans = session.scalars(
            select(Attribute)
            .where(
                Attribute.person_id == person_id,
                Attribute.origin == AttributeOrigin.human,
                Attribute.state == AttributeState.human_verified,
            )
            .order_by(Attribute.group, Attribute.key)
        ).all()
        truth = {category_id(a.group, a.key): a.value for a in humans if a.value is not None}
        chosen = sorted(truth)[:max_questions]
        if not chosen:
            continue
        entries = [{"category": c} for c in chosen]
        session.add(
            ReviewTask(
                person_id=person_id,
                kind="attributes",
                status="gold",
                is_gold=True,
                payload={"attributes": entries, "truth": {c: truth[c] for c in chosen}},
            )
        )
        made += 1
    session.flush()
    return made
