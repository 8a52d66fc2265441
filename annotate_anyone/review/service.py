"""Review use cases for the API, the CLI and the job runner: push, sync, status, stats, webhook, media.

This is the composition root of the review package: it builds the backend, the task builder, the
applier and the pusher from settings. It also holds the steps of the ``review_push`` and ``review_sync``
job kinds (one unit each; listed in ``annotate_anyone/jobs/kinds.py``).
"""

from __future__ import annotations

import hmac
import io
import logging
from dataclasses import asdict
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone import logs
from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import Taxonomy, load_taxonomy
from annotate_anyone.catalog.models import Image, Person
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.errors import AnnotateAnyoneError, InvalidInput, NotFound
from annotate_anyone.jobs import rows
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.review import configs, media, qa
from annotate_anyone.review.builders import TaskBuilder
from annotate_anyone.review.client import WEBHOOK_HEADER, LabelStudioBackend, ReviewBackend
from annotate_anyone.review.flagging import flag_annotators
from annotate_anyone.review.models import ReviewAnswer, ReviewEvent, ReviewProject
from annotate_anyone.review.push import Pusher, PushReport
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.review.sync import (
    FOLLOW_UP,
    Applier,
    SyncReport,
    process_events,
    receive_event,
    reconcile,
    withdraw_gone,
)
from annotate_anyone.settings import Settings, is_placeholder, reveal
from annotate_anyone.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/review/webhook"


class WebhookForbidden(AnnotateAnyoneError):
    """A webhook call without the shared secret (the API answers 403)."""


def make_backend(settings: Settings, options: ReviewConfig | None = None) -> ReviewBackend:
    """The configured review backend (Label Studio)."""
    return LabelStudioBackend.from_settings(settings, options or settings.review)


def webhook_url(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}{WEBHOOK_PATH}"


def make_pusher(
    settings: Settings,
    *,
    kind: str = "attributes",
    backend: ReviewBackend | None = None,
    store: ObjectStore | None = None,
    taxonomy: Taxonomy | None = None,
    webhook: bool = True,
    options: ReviewConfig | None = None,
) -> Pusher:
    """A :class:`Pusher` wired from settings."""
    options = options or settings.review
    store = store or open_store(settings=settings)
    taxonomy = taxonomy or load_taxonomy()

    def image_url(person: Person, image: Image) -> str:
        return media.image_url(settings, store, person, image, options.media_ttl_s)

    def overlay_url(person: Person, image: Image) -> str | None:
        return media.overlay_url(settings, store, person, image, options.media_ttl_s)

    return Pusher(
        db_url=settings.db_url,
        backend=backend or make_backend(settings, options),
        taxonomy=taxonomy,
        builder=TaskBuilder(taxonomy, store, image_url, options=options, overlay_url=overlay_url),
        options=options,
        kind=kind,
        webhook=(webhook_url(settings), reveal(settings.webhook_secret)) if webhook else None,
    )


def make_applier(settings: Settings, options: ReviewConfig | None = None) -> Applier:
    options = options or settings.review
    return Applier(load_taxonomy(), open_store(settings=settings), options)


def push_tasks(
    settings: Settings,
    *,
    kind: str = "attributes",
    limit: int | None = None,
    backend: ReviewBackend | None = None,
    options: ReviewConfig | None = None,
) -> PushReport:
    """Push queued review tasks of ``kind`` (batched, most uncertain first, gold mixed in)."""
    if kind not in configs.KINDS:
        raise InvalidInput(f"unknown review kind {kind!r}; known: {', '.join(configs.KINDS)}")
    return make_pusher(settings, kind=kind, backend=backend, options=options).run(limit=limit)


def sync_review(
    settings: Settings,
    *,
    full: bool = False,
    backend: ReviewBackend | None = None,
    flag: bool = True,
    options: ReviewConfig | None = None,
) -> dict[str, Any]:
    """Withdraw tasks whose image left the data, apply pending webhook events, reconcile every project, then
    flag annotators below the gold bar."""
    backend = backend or make_backend(settings, options)
    applier = make_applier(settings, options)
    withdrawn = withdraw_gone(settings.db_url, backend)
    events = process_events(settings.db_url, backend, applier)
    with session_scope(settings.db_url) as session:
        project_ids = list(
            session.scalars(
                select(ReviewProject.id).where(ReviewProject.backend == backend.name).order_by(ReviewProject.id)
            )
        )
    projects = {pid: asdict(reconcile(settings.db_url, backend, applier, pid, full=full)) for pid in project_ids}
    flagged: dict[str, Any] = {}
    if flag:
        with session_scope(settings.db_url) as session:
            applier.refresh_reliability(session)
            flagged = asdict(flag_annotators(session, applier, applier.options, utcnow()))
    logs.event(
        log,
        "review.sync_done",
        full=full,
        projects=len(projects),
        events=asdict(events),
        withdrawn=withdrawn,
        flagged=flagged.get("flagged") if isinstance(flagged, dict) else None,
    )
    return {"withdrawn": withdrawn, "events": asdict(events), "projects": projects, "flags": flagged}


def handle_events(settings: Settings, backend: ReviewBackend | None = None) -> SyncReport:
    """Apply stored webhook events (the webhook route defers to this)."""
    return process_events(settings.db_url, backend or make_backend(settings), make_applier(settings))


def webhook_secret_ok(settings: Settings, secret: str | None) -> bool:
    """Whether ``secret`` is the configured webhook secret (never a placeholder: those are refused)."""
    expected = reveal(settings.webhook_secret) or ""
    if not secret or is_placeholder(expected):
        return False
    return hmac.compare_digest(secret.encode(), expected.encode())


def accept_webhook(session: Session, settings: Settings, *, secret: str | None, payload: dict[str, Any]) -> int:
    """Check the shared secret and store the event; returns its id. Raises :class:`WebhookForbidden` on a bad secret."""
    if not webhook_secret_ok(settings, secret):
        raise WebhookForbidden(f"missing or wrong {WEBHOOK_HEADER}")
    if not isinstance(payload, dict) or "action" not in payload:
        raise InvalidInput("a webhook payload needs an 'action'")
    return receive_event(session, payload).id


def review_status(session: Session) -> dict[str, Any]:
    """Queue and sync state: tasks by kind and status, projects, pending events, answers."""
    tasks: dict[str, dict[str, int]] = {}
    for kind, status, gold, n in session.execute(
        select(ReviewTask.kind, ReviewTask.status, ReviewTask.is_gold, func.count()).group_by(
            ReviewTask.kind, ReviewTask.status, ReviewTask.is_gold
        )
    ):
        tasks.setdefault(kind, {})
        name = f"gold_{status}" if gold else status
        tasks[kind][name] = tasks[kind].get(name, 0) + n
    answers = dict(session.execute(select(ReviewAnswer.status, func.count()).group_by(ReviewAnswer.status)).all())
    pending = session.scalar(select(func.count()).select_from(ReviewEvent).where(ReviewEvent.processed_at.is_(None)))
    projects = [
        {
            "id": p.id,
            "kind": p.kind,
            "taxonomy_version": p.taxonomy_version,
            "external_id": p.external_id,
            "cursor": p.cursor,
            "last_sync_at": p.last_sync_at.isoformat() if p.last_sync_at else None,
        }
        for p in session.scalars(select(ReviewProject).order_by(ReviewProject.id))
    ]
    follow_ups: dict[str, int] = {}
    waiting = 0  # questions a partial answer left open, asked again in a follow-up not answered yet
    for status, entries in session.execute(
        select(ReviewTask.status, ReviewTask.payload["attributes"]).where(
            ReviewTask.payload["purpose"].as_string() == FOLLOW_UP
        )
    ):
        follow_ups[status] = follow_ups.get(status, 0) + 1
        if status in ("queued", "pushing", "pushed"):
            waiting += len(entries or [])
    return {
        "tasks": tasks,
        "answers": answers,
        "pending_events": pending,
        "projects": projects,
        "follow_ups": follow_ups,
        "unanswered_questions": waiting,
    }


def annotator_stats(session: Session, options: ReviewConfig | None = None) -> list[dict[str, Any]]:
    """Per-annotator throughput (over a window, once there are enough answers), gold accuracy and flag."""
    options = options or ReviewConfig()
    return qa.annotator_stats(
        session,
        utcnow(),
        window_days=options.rate_window_days,
        min_answers=options.rate_min_answers,
        min_gold=options.gold_min_answers,
    )


def agreement(session: Session) -> dict[str, dict[str, float]]:
    """Per-category agreement on overlapped tasks."""
    return qa.agreement(session)


def open_media(
    session: Session,
    settings: Settings,
    store: ObjectStore,
    *,
    person_id: int,
    expires: int,
    sig: str,
    layer: str | None = None,
) -> tuple[BinaryIO, str]:
    """The image of a person (or its parsing overlay) for a signed media link: (stream, media type)."""
    media.verify_media(settings, person_id, expires, sig, layer=layer)
    person = session.get(Person, person_id)
    image = session.get(Image, person.image_id) if person is not None else None
    if image is None:
        raise NotFound(f"no person {person_id}")
    if layer == "parsing":
        return io.BytesIO(media.render_overlay(store, person, image)), "image/jpeg"
    return store.open(image.storage_key), f"image/{(image.format or 'jpeg').lower()}"


# ---------------------------------------------------------------------- job kinds


def plan_review_job(session: Session, job: Job, settings: Settings) -> list[Unit]:
    """A push or a sync is one unit (its ``job_units`` row makes a re-delivery a no-op)."""
    job.total = 1
    return [Unit.single(job.kind)]


def _keep_result(job_id: int, settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    with session_scope(settings.db_url) as session:
        job = rows.get_job(session, job_id)
        job.result = {**(job.result or {}), **result}
    return result


def push_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    params = job.params or {}
    report = push_tasks(settings, kind=params.get("kind", "attributes"), limit=params.get("limit"))
    return _keep_result(job.id, settings, asdict(report))


def sync_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    return _keep_result(job.id, settings, sync_review(settings, full=bool((job.params or {}).get("full"))))
