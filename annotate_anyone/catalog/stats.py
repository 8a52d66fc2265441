"""Funnel statistics per job and per source, derived from item and image rows (never kept as counters)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Image, Item, ItemStatus, Person

STEPS = ("listed", "fetched", "decoded", "unique", "quality", "one_human", "safe", "kept")  # ingest order


def _stage_of(reason: str | None) -> str:
    """Which funnel step a drop reason belongs to."""
    prefix = (reason or "").split(":", 1)[0]
    return {
        "read": "fetched",
        "fetch": "fetched",
        "decode": "decoded",
        "dedup": "unique",
        "quality": "quality",
        "humans": "one_human",
        "safety": "safe",
        "takedown": "unique",
    }.get(prefix, "quality")


def funnel(rows: list[tuple[ItemStatus, str | None, int]]) -> dict[str, Any]:
    """Build the funnel from (status, reason, count) rows: survivors at each step and drops by reason."""
    listed = sum(n for _, _, n in rows)
    pending = sum(n for s, _, n in rows if s == ItemStatus.pending)
    lost_at = dict.fromkeys(STEPS, 0)
    reasons: dict[str, int] = {}
    for status, reason, n in rows:
        if status in (ItemStatus.pending, ItemStatus.kept):
            continue
        key = reason or status.value
        reasons[key] = reasons.get(key, 0) + n
        lost_at[_stage_of(reason if status != ItemStatus.duplicate else "dedup:")] += n
    steps: dict[str, int] = {"listed": listed}
    alive = listed - pending
    for step in STEPS[1:]:
        alive -= lost_at[step]
        steps[step] = alive
    return {"steps": steps, "pending": pending, "dropped_by_reason": dict(sorted(reasons.items()))}


def _rows(session: Session, *where: Any) -> list[tuple[ItemStatus, str | None, int]]:
    query = select(Item.status, Item.reason, func.count()).where(*where).group_by(Item.status, Item.reason)
    return [(s, r, n) for s, r, n in session.execute(query).all()]


def job_funnel(session: Session, job_id: int) -> dict[str, Any]:
    return funnel(_rows(session, Item.job_id == job_id))


def source_funnel(session: Session, source_id: int) -> dict[str, Any]:
    """The source's funnel, extended with persons labelled and released where those stages have run."""
    result = funnel(_rows(session, Item.source_id == source_id))
    result["steps"]["with_person"] = (
        session.scalar(
            select(func.count(func.distinct(Person.image_id))).join(Image).where(Image.source_id == source_id)
        )
        or 0
    )
    return result


def overview(session: Session) -> dict[str, Any]:
    """Pool-wide totals for the status command and the dashboard (which add the release count,
    ``release.service.count_releases``)."""
    return {
        "funnel": funnel(_rows(session)),
        "images": dict(session.execute(select(Image.status, func.count()).group_by(Image.status)).all()),
        "persons": session.scalar(select(func.count(Person.id))) or 0,
    }
