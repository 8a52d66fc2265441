"""What ``GET /metrics`` reads from the tables at scrape time (``metrics.DatabaseCollector`` runs it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from annotate_anyone.catalog.models import Item
from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs.models import Job
from annotate_anyone.review.models import ReviewEvent, ReviewProject
from annotate_anyone.settings import Settings


def table_metrics(settings: Settings) -> list[Metric]:
    """Jobs by kind and state, items by outcome and reason, review sync lag and webhook backlog."""
    jobs = GaugeMetricFamily("aa_jobs", "Jobs by kind and state", labels=["kind", "state"])
    items = GaugeMetricFamily("aa_items", "Items by outcome and drop reason", labels=["outcome", "reason"])
    lag = GaugeMetricFamily(
        "aa_review_sync_lag_seconds",
        "Seconds since each Label Studio project was last reconciled (since creation if never)",
        labels=["project"],
    )
    pending = GaugeMetricFamily("aa_review_events_pending", "Label Studio webhook events not yet applied")
    oldest = GaugeMetricFamily(
        "aa_review_events_oldest_pending_seconds", "Age of the oldest webhook event not yet applied (0: none)"
    )
    now = datetime.now(UTC)
    with session_scope(settings.db_url) as session:
        for kind, state, count in session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ):
            jobs.add_metric([kind, _value(state)], float(count))
        for outcome, reason, count in session.execute(
            select(Item.status, Item.reason, func.count()).group_by(Item.status, Item.reason)
        ):
            items.add_metric([_value(outcome), reason or ""], float(count))
        for kind, version, synced, created in session.execute(
            select(ReviewProject.kind, ReviewProject.taxonomy_version, ReviewProject.last_sync_at,
                   ReviewProject.created_at)
        ):  # fmt: skip
            lag.add_metric([f"{kind}/{version}"], _age_s(synced or created, now) or 0.0)
        count, first = session.execute(
            select(func.count(), func.min(ReviewEvent.received_at)).where(ReviewEvent.processed_at.is_(None))
        ).one()
        pending.add_metric([], float(count or 0))
        oldest.add_metric([], _age_s(first, now) or 0.0)
    return [jobs, items, lag, pending, oldest]


def _age_s(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite gives naive datetimes; every stored time is UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))
