"""Data for the dashboard pages. Each page reads from a service; a page whose module has not landed says so.

Optional providers (called when their module exists, else the page shows "not available yet"):

* review:   ``annotate_anyone.review.service.review_status(session)`` (tasks, projects) and
  ``annotator_stats(session)`` (answers, answers_per_hour, gold_accuracy per annotator);
* flywheel: ``annotate_anyone.annotation.flywheel.flywheel_report(session, number, config=)`` per
  ``FlywheelRound`` (its ``per_category`` accuracies and ``human_hours.human_share``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.catalog import stats
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, Person, Source
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.release.models import Release
from annotate_anyone.release.service import count_releases
from annotate_anyone.settings import Settings

FUNNEL_STEPS = ("fetched", "decoded", "unique", "quality", "one_human", "safe", "labelled", "released")
INGEST_STEPS = FUNNEL_STEPS.index("labelled")  # the steps the ingest funnel counts
LABELLED = (AttributeState.auto_accepted, AttributeState.human_verified)
ROUTED = (AttributeState.needs_review, AttributeState.human_verified, AttributeState.rejected)
logger = logging.getLogger(__name__)


class TTLCache:
    """Keeps expensive aggregates for a few seconds; a stale value is served while one thread recomputes it.

    Only the first read of a key waits for ``compute``; later reads never do (stale-while-revalidate), so
    the overview's aggregates do not show up in page latency. ``compute`` must open its own DB session.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        hit = self._values.get(key)
        if hit is None:
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value
        if time.monotonic() - hit[0] >= self.ttl_s:
            with self._lock:
                start = key not in self._refreshing
                self._refreshing.add(key)
            if start:
                threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
        return hit[1]

    def _refresh(self, key: str, compute: Callable[[], Any]) -> None:
        try:
            self._values[key] = (time.monotonic(), compute())
        except Exception:
            logger.exception("refreshing %s failed; serving the previous value", key)
        finally:
            with self._lock:
                self._refreshing.discard(key)


def source_funnels(session: Session, *, limit: int = 20) -> list[dict[str, Any]]:
    """The funnel of each source (fetched -> ... -> labelled -> released), newest sources first."""
    sources = session.scalars(select(Source).order_by(Source.id.desc()).limit(limit)).all()
    labelled = dict(
        session.execute(
            select(Image.source_id, func.count(func.distinct(Image.id)))
            .join(Person, Person.image_id == Image.id)
            .join(Attribute, Attribute.person_id == Person.id)
            .where(Attribute.state.in_(LABELLED), Image.source_id.in_([s.id for s in sources]))
            .group_by(Image.source_id)
        ).all()
    )
    released = latest_release_counts(session)
    out = []
    for source in sources:
        funnel = stats.source_funnel(session, source.id)
        steps = funnel["steps"]
        row = {k: steps.get(k, 0) for k in FUNNEL_STEPS[:INGEST_STEPS]}
        row["labelled"] = labelled.get(source.id, 0)
        row["released"] = (released.get("by_source") or {}).get(str(source.id))
        out.append(
            {
                "id": source.id,
                "name": source.name,
                "kind": source.kind.value,
                "listed": steps.get("listed", 0),
                "pending": funnel["pending"],
                "steps": row,
                "dropped_by_reason": funnel["dropped_by_reason"],
                "taken_down": source.taken_down,
            }
        )
    return out


def latest_release_counts(session: Session) -> dict[str, Any]:
    release = session.scalar(select(Release).order_by(Release.id.desc()).limit(1))
    return dict(release.counts or {}) if release else {}


def queue_depths(session: Session) -> dict[str, int]:
    """Jobs by status and review tasks by status: what is waiting."""
    jobs = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    review = dict(session.execute(select(ReviewTask.status, func.count()).group_by(ReviewTask.status)).all())
    return {
        "jobs_queued": jobs.get(JobStatus.queued, 0),
        "jobs_running": jobs.get(JobStatus.running, 0),
        "jobs_failed": jobs.get(JobStatus.failed, 0),
        "review_queued": review.get("queued", 0),
        "review_pushed": review.get("pushed", 0),
    }


def worker_health(settings: Settings) -> dict[str, Any]:
    """Who runs the work: the in-process executor (embedded) or Celery workers and their broker queue."""
    if settings.executor_name != "celery":
        return {
            "executor": "inline",
            "healthy": True,
            "workers": [f"in-process ({settings.workers} processes)"],
            "broker_queue": None,
        }
    info: dict[str, Any] = {"executor": "celery", "healthy": False, "workers": [], "broker_queue": None}
    try:
        from annotate_anyone.executors.celery import CeleryExecutor

        executor = CeleryExecutor(settings)
        info["workers"] = sorted(name for reply in executor.ping(timeout=0.5) for name in reply)
        info["healthy"] = bool(info["workers"])
        if settings.broker_url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(settings.broker_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            info["broker_queue"] = int(client.llen(executor.app.conf.task_default_queue))
    except Exception as exc:  # the page reports the broker as down rather than failing
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def overview(session: Session, settings: Settings) -> dict[str, Any]:
    """Everything the overview page shows."""
    pool = stats.overview(session)
    return {
        "sources": source_funnels(session),
        "images": {getattr(k, "value", k): v for k, v in pool["images"].items()},
        "persons": pool["persons"],
        "releases": count_releases(session),
        "queues": queue_depths(session),
        "steps": FUNNEL_STEPS,
    }


def review_categories(session: Session) -> list[dict[str, Any]]:
    """Per category: its name as people read it ("Dress · pattern", with ``group.key``), model labels routed to
    humans, and human answers recorded."""
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.review.question_layout import category_title

    taxonomy = load_taxonomy()
    rows = session.execute(
        select(Attribute.group, Attribute.key, Attribute.origin, Attribute.state, func.count()).group_by(
            Attribute.group, Attribute.key, Attribute.origin, Attribute.state
        )
    )
    cats: dict[str, dict[str, Any]] = {}
    for group, key, origin, state, n in rows:
        name = category_title(taxonomy, group, key) if 0 <= group < len(taxonomy.groups) else f"{group}.{key}"
        entry = cats.setdefault(
            f"{group}.{key}", {"category": f"{group}.{key}", "name": name, "routed": 0, "answered": 0}
        )
        if origin == AttributeOrigin.human:
            entry["answered"] += n
        elif state in ROUTED:
            entry["routed"] += n
    return sorted((c for c in cats.values() if c["routed"] or c["answered"]), key=lambda c: -c["routed"])


def review_overview(session: Session, settings: Settings) -> dict[str, Any]:
    """Routed vs answered per category, per-annotator throughput and gold accuracy, Label Studio projects.

    Task and annotator figures come from ``annotate_anyone.review.service``.
    """
    from annotate_anyone.review.service import annotator_stats, review_status

    out: dict[str, Any] = {
        "categories": review_categories(session),
        "tasks": None,
        "annotators": None,
        "projects": [],
        "error": None,
        "label_studio_url": settings.label_studio_url,
        "follow_ups": None,
        "unanswered_questions": None,
        "rate_window_days": settings.review.rate_window_days,
    }
    try:
        state = review_status(session)
        out["tasks"] = state.get("tasks")
        out["follow_ups"] = state.get("follow_ups")
        out["unanswered_questions"] = state.get("unanswered_questions")
        base = (settings.label_studio_url or "").rstrip("/")
        out["projects"] = [
            {**p, "url": f"{base}/projects/{p['external_id']}" if base and p.get("external_id") else None}
            for p in state.get("projects", [])
        ]
        out["annotators"] = annotator_stats(session, settings.review)
    except Exception as exc:  # a failing statistic is reported on its page, not as a 500
        logger.exception("review statistics failed")
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def flywheel(session: Session, settings: Settings) -> dict[str, Any]:
    """Per round: human share of labels and model accuracy per category.

    Reads ``annotate_anyone.annotation.flywheel.flywheel_report(session, number, config=...)`` per round.
    A failing report is shown on the page as an error (and logged), not as a broken page.
    """
    from annotate_anyone.annotation.flywheel import flywheel_report as report
    from annotate_anyone.annotation.models import FlywheelRound

    numbers = list(session.scalars(select(FlywheelRound.number).order_by(FlywheelRound.number)))
    rounds = []
    data: dict[str, Any] = {}
    try:
        for number in numbers[-20:]:
            data = report(session, number, config=settings.annotation)
            hours = data.get("human_hours") or {}
            per_category = data.get("per_category") or {}
            rounds.append(
                {
                    "round": number,
                    "human_share": hours.get("human_share"),
                    "hours_saved": hours.get("saved"),
                    "hours_open": hours.get("still_open"),
                    "accuracy": {
                        cat: (v.get("accuracy") if isinstance(v, dict) else v) for cat, v in per_category.items()
                    },
                }
            )
    except Exception as exc:  # a failing report is shown on its page, not as a 500
        logger.exception("flywheel report failed")
        return {"rounds": rounds, "versions": [], "error": f"{type(exc).__name__}: {exc}"}
    return {"rounds": rounds, "versions": model_versions(data.get("per_model_version") or {}), "error": None}


def model_versions(per_version: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Gold accuracy of every model version (fine-tuned VLM versions included), for the flywheel page:
    per version the categories measured, their mean accuracy and how many pass the gate, and per category."""
    rows = []
    for version, cats in per_version.items():
        accs = [v["accuracy"] for v in cats.values() if v.get("accuracy") is not None]
        rows.append(
            {
                "version": version,
                "categories": len(cats),
                "mean_accuracy": sum(accs) / len(accs) if accs else None,
                "passing": sum(1 for v in cats.values() if v.get("passes_gate")),
                "per_category": {cat: v.get("accuracy") for cat, v in sorted(cats.items())},
            }
        )
    return rows


def category_coverage() -> list[dict[str, Any]]:
    """How each category is answered before anyone labels it: a packaged labeler with a dev-set
    calibration, or "needs a model or a person"."""
    from annotate_anyone.annotation.dev_calibration import coverage_rows

    return coverage_rows()


def attribute_rows(image: Image) -> list[dict[str, Any]]:
    """An image's labels per person, sorted for reading: group, key, value, confidence, provenance."""
    rows = []
    for person in image.persons:
        for a in sorted(person.attributes, key=lambda a: (a.group, a.key, a.origin.value)):
            rows.append(
                {
                    "person": person.index,
                    "group": a.group,
                    "key": a.key,
                    "value": a.value,
                    "confidence": a.confidence,
                    "origin": a.origin.value,
                    "model_version": a.model_version,
                    "annotator": a.annotator,
                    "state": a.state.value,
                }
            )
    return rows


def person_overlays(image: Image) -> list[dict[str, Any]]:
    """What the client draws over the image: box, keypoints, and the URLs of parsing map and mask."""
    return [
        {
            "index": p.index,
            "box": p.box,
            "keypoints": p.keypoints or [],
            "shot_type": p.shot_type,
            "parsing": f"/images/{image.id}/persons/{p.index}/parsing" if p.parsing_key else None,
            "mask": f"/images/{image.id}/persons/{p.index}/mask" if p.mask_key else None,
        }
        for p in sorted(image.persons, key=lambda p: p.index)
    ]
