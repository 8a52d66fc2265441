"""The ingest job: scan sources into items, run the ingest pipeline over batches, record every outcome."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.db.models import Image, ImageStatus, Item, ItemStatus, Job, Person, Source
from annotate_anyone.pipeline.build import build_stages
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.seen import DUPLICATE
from annotate_anyone.pipeline.stage import Stage, StageStats, run_stages
from annotate_anyone.services import jobs, near_dup
from annotate_anyone.services.sources import get_source, scan_source
from annotate_anyone.settings import Settings

FAILED_PREFIXES = ("read:", "fetch:")

# Stages are built once per process and per configuration: models load once, not per batch.
_STAGE_CACHE: dict[str, list[Stage]] = {}


def stages_for(settings: Settings, names: list[str], options: dict[str, Any]) -> list[Stage]:
    key = json.dumps([settings.db_url, settings.store_url, names, options], sort_keys=True, default=str)
    if key not in _STAGE_CACHE:
        _STAGE_CACHE[key] = build_stages(names, settings, options)
    return _STAGE_CACHE[key]


def stage_stats() -> dict[str, StageStats]:
    """Per-stage counters and timings accumulated in this process (for benchmarks and logs)."""
    merged: dict[str, StageStats] = {}
    for stages in _STAGE_CACHE.values():
        for stage in stages:
            merged.setdefault(stage.name, StageStats(stage.name)).merge(stage.stats)
    return merged


def _plan(session: Session, job: Job, settings: Settings) -> list[jobs.Unit]:
    source_ids = job.params.get("source_ids") or []
    for source_id in source_ids:
        source = get_source(session, source_id)
        scan_source(session, source, job_id=job.id)
        # items listed earlier but never processed (a crashed or cancelled job) join this job
        session.query(Item).filter(
            Item.source_id == source_id,
            Item.status == ItemStatus.pending,
            or_(Item.job_id.is_(None), Item.job_id != job.id),
        ).update({Item.job_id: job.id}, synchronize_session=False)
        if job.params.get("retry_failed"):
            session.query(Item).filter(Item.source_id == source_id, Item.status == ItemStatus.failed).update(
                {Item.job_id: job.id, Item.status: ItemStatus.pending, Item.reason: None}, synchronize_session=False
            )
    ids = list(session.scalars(select(Item.id).where(Item.job_id == job.id).order_by(Item.id)))
    job.total = len(ids)
    size = int(job.params.get("batch_size") or settings.batch_size)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _progress(session: Session, job: Job) -> tuple[int, int]:
    rows = dict(
        session.execute(select(Item.status, func.count()).where(Item.job_id == job.id).group_by(Item.status)).all()
    )
    done = sum(n for status, n in rows.items() if status != ItemStatus.pending)
    return done, rows.get(ItemStatus.failed, 0)


def _finish(session: Session, job: Job, settings: Settings) -> list[int]:
    from annotate_anyone.services.scheduling import maybe_queue_round
    from annotate_anyone.services.stats import job_funnel

    job.counters = job_funnel(session, job.id)
    if job.params.get("auto_round", True):
        round_job = maybe_queue_round(session, settings)
        return [round_job] if round_job else []
    return []


def _run_unit(job: Job, unit: jobs.Unit, settings: Settings) -> dict[str, Any]:
    with session_scope(settings.db_url) as session:
        rows = session.execute(
            select(Item, Source.allow_private)
            .join(Source, Source.id == Item.source_id)
            .where(Item.id.in_(unit), Item.status == ItemStatus.pending)
        ).all()
        records = [
            Record(item_id=item.id, uri=item.uri, source_id=item.source_id, meta=dict(item.meta or {}))
            for item, _ in rows
        ]
        allow_private = any(allowed for _, allowed in rows)
    if not records:
        return {"processed": 0}
    names = job.params.get("stages") or settings.ingest_stages
    options = {"allow_private": allow_private, **(job.params.get("stage_options") or {})}
    records = run_stages(stages_for(settings, names, options), records)
    with session_scope(settings.db_url) as session:
        outcome = commit_records(session, records, near_threshold=settings.near_dup_threshold)
    return {"processed": len(records), **outcome}


def commit_records(session: Session, records: list[Record], *, near_threshold: int | None = None) -> dict[str, int]:
    """Write the outcome of each record: image and person rows for kept ones, a reason for the rest.

    Idempotent: items already processed are left alone; the unique sha256 makes concurrent batches
    that meet the same bytes record one image and one duplicate.
    """
    counts = {"kept": 0, "duplicate": 0, "dropped": 0, "failed": 0}
    near = None
    if near_threshold is not None and any(r.phash and not r.dropped for r in records):
        near_dup.lock_for_dedup(session)
        near = near_dup.index_for(session, near_threshold)
    items = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_([r.item_id for r in records])))}
    for record in records:
        item = items.get(record.item_id)
        if item is None or item.status != ItemStatus.pending:
            continue
        item.attempts += 1
        item.processed_at = utcnow()
        if record.dropped:
            _record_drop(session, item, record)
        else:
            _record_keep(session, item, record, near)
        counts[item.status.value] += 1
        record.release_payload()
    return counts


def _record_drop(session: Session, item: Item, record: Record) -> None:
    reason = record.drop_reason or "unknown"
    item.reason, item.detail = reason, record.error
    if reason == DUPLICATE:
        item.status = ItemStatus.duplicate
        item.image_id = record.meta.get("duplicate_of_image")
        if item.image_id is None and record.sha256:
            item.image_id = session.scalar(select(Image.id).where(Image.sha256 == record.sha256))
        return
    if reason.startswith(FAILED_PREFIXES) or record.sha256 is None:
        item.status = ItemStatus.failed
        return
    item.status = ItemStatus.dropped
    image = _insert_image(session, record, status=ImageStatus.dropped, reason=reason)
    if image is None:  # another batch recorded the same bytes first
        item.status, item.reason = ItemStatus.duplicate, DUPLICATE
        item.image_id = session.scalar(select(Image.id).where(Image.sha256 == record.sha256))
    else:
        item.image_id = image.id


def _record_keep(session: Session, item: Item, record: Record, near: near_dup.NearIndex | None) -> None:
    image = _insert_image(session, record, status=ImageStatus.kept, reason=None)
    if image is None:
        item.status, item.reason = ItemStatus.duplicate, DUPLICATE
        item.image_id = session.scalar(select(Image.id).where(Image.sha256 == record.sha256))
        return
    item.image_id = image.id
    if near is not None and (kept := near_dup.resolve(session, image, near)) is not None:
        item.status, item.reason = ItemStatus.duplicate, near_dup.NEAR
        item.detail = f"near duplicate of image {kept.id}, which is larger or sharper"
        return
    item.status = ItemStatus.kept
    for index, person in enumerate(record.persons):
        session.add(
            Person(
                image_id=image.id,
                index=index,
                box=[float(v) for v in person.get("box", [])],
                score=float(person.get("score", 0.0)),
                keypoints=person.get("keypoints"),
                face_boxes=person.get("face_boxes"),
                shot_type=person.get("shot_type"),
                mask_key=person.get("mask_key"),
            )
        )
    session.flush()


def _insert_image(session: Session, record: Record, *, status: ImageStatus, reason: str | None) -> Image | None:
    """Insert the image row in a savepoint; ``None`` if its sha256 is already there."""
    image = Image(
        sha256=record.sha256,
        phash=record.phash,
        source_id=record.source_id,
        source_uri=record.uri,
        storage_key=record.storage_key or "",
        width=record.width or 0,
        height=record.height or 0,
        format=record.format,
        bytes=len(record.data) if record.data is not None else 0,
        status=status,
        drop_reason=reason,
        metrics={k: float(v) for k, v in record.metrics.items()},
        meta=record.meta,
    )
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        return None
    return image


jobs.register("ingest", jobs.JobHandler(plan=_plan, run_unit=_run_unit, progress=_progress, finish=_finish))
