"""The ingest job: scan sources into items, run the ingest pipeline over batches, record every outcome."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from annotate_anyone import logs
from annotate_anyone.catalog import dedup, takedown
from annotate_anyone.catalog.dedup import DUPLICATE
from annotate_anyone.catalog.models import Image, ImageStatus, Item, ItemStatus, Person, Source
from annotate_anyone.catalog.sources import claim_source, get_source, scan_source
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.errors import ConfigError
from annotate_anyone.jobs import units
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.units import Unit
from annotate_anyone.pipeline.build import PoolChecks, build_stages
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.sources.confine import uri_refusal
from annotate_anyone.pipeline.stage import Stage, StageStats, run_stages
from annotate_anyone.settings import Settings

FAILED_PREFIXES = ("read:", "fetch:")
OVERLAP_CHUNK = 16  # records per chunk when reading overlaps the other stages (see run_overlapped)

log = logging.getLogger(__name__)
# Stages are built once per process and per configuration: models load once, not per batch.
_STAGE_CACHE: dict[str, list[Stage]] = {}
_COMMIT_STATS = StageStats("commit")  # the database writes of each unit, timed like a stage
# What the ``seen`` and ``takedown`` stages ask of the pool: the catalog's answers, passed to the pipeline.
POOL_CHECKS = PoolChecks(seen=dedup.drop_seen, taken_down=takedown.drop_taken_down)


def stages_for(settings: Settings, names: list[str], options: dict[str, Any]) -> list[Stage]:
    key = json.dumps([settings.db_url, settings.store_url, names, options], sort_keys=True, default=str)
    if key not in _STAGE_CACHE:
        _STAGE_CACHE[key] = build_stages(names, settings, options, POOL_CHECKS)
    return _STAGE_CACHE[key]


def stage_stats() -> dict[str, StageStats]:
    """Per-stage counters and timings accumulated in this process (for benchmarks and logs)."""
    merged: dict[str, StageStats] = {}
    for stages in _STAGE_CACHE.values():
        for stage in stages:
            merged.setdefault(stage.name, StageStats(stage.name)).merge(stage.stats)
    if _COMMIT_STATS.records_in:
        merged["commit"] = StageStats("commit")
        merged["commit"].merge(_COMMIT_STATS)
    return merged


def run_overlapped(stages: list[Stage], records: list[Record], chunk: int = OVERLAP_CHUNK) -> list[Record]:
    """Run ``records`` through ``stages`` in chunks, the leading read stage one chunk ahead in a thread.

    Reading waits on the network, the later stages on the CPU: while chunk ``i`` is decoded, checked
    and stored, chunk ``i + 1`` is being fetched, so a worker process keeps its core busy. The first
    chunk is a quarter size: it is the one read with nothing to overlap.
    """
    if len(records) <= chunk or not stages or stages[0].name != "read":
        return run_stages(stages, records)
    head, rest = stages[0], stages[1:]
    first = max(1, chunk // 4)
    chunks = [records[:first]] + [records[i : i + chunk] for i in range(first, len(records), chunk)]
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        ahead = pool.submit(head.process_batch, chunks[0])
        for following in [*chunks[1:], None]:
            ready = ahead.result()
            if following is not None:
                ahead = pool.submit(head.process_batch, following)
            run_stages(rest, ready)
    return records


def _claim(job: Job, settings: Settings, source_ids: list[int]) -> None:
    """Claim every source for this job in one short transaction of its own (before the long scan, so
    SQLite's write lock is not held while listing); :class:`AlreadyRunning` if another holds one."""
    with session_scope(settings.db_url) as session:
        for source_id in sorted(set(source_ids)):
            get_source(session, source_id)
            claim_source(session, source_id, job.id, settings)


def plan(session: Session, job: Job, settings: Settings) -> list[Unit]:
    """List the sources into items (claiming them first) and batch this job's items into units."""
    source_ids = job.params.get("source_ids") or []
    _claim(job, settings, source_ids)
    for source_id in source_ids:
        source = get_source(session, source_id)
        scan_source(session, source, settings, job_id=job.id)
        # items listed earlier but never processed (a crashed or cancelled job) join this job
        session.query(Item).filter(
            Item.source_id == source_id,
            Item.status == ItemStatus.pending,
            or_(Item.job_id.is_(None), Item.job_id != job.id),
        ).update({Item.job_id: job.id}, synchronize_session=False)
        if job.params.get("retry_failed"):
            units.forget(session, job.id)  # a resumed job redoes the units of items it failed (pending ones only run)
            session.query(Item).filter(Item.source_id == source_id, Item.status == ItemStatus.failed).update(
                {Item.job_id: job.id, Item.status: ItemStatus.pending, Item.reason: None}, synchronize_session=False
            )
    ids = list(session.scalars(select(Item.id).where(Item.job_id == job.id).order_by(Item.id)))
    job.total = len(ids)
    size = int(job.params.get("batch_size") or settings.batch_size)
    return units.batches(ids, size)


def progress(session: Session, job: Job) -> tuple[int, int]:
    rows = dict(
        session.execute(select(Item.status, func.count()).where(Item.job_id == job.id).group_by(Item.status)).all()
    )
    done = sum(n for status, n in rows.items() if status != ItemStatus.pending)
    return done, rows.get(ItemStatus.failed, 0)


def finish(session: Session, job: Job, settings: Settings) -> list[int]:
    from annotate_anyone.catalog.scheduling import maybe_queue_round
    from annotate_anyone.catalog.stats import job_funnel

    job.counters = job_funnel(session, job.id)
    if job.params.get("auto_round", True):
        round_job = maybe_queue_round(session, settings)
        return [round_job] if round_job else []
    return []


def run_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    """Run the unit's pending items through the pipeline and commit every outcome (done items are skipped)."""
    with session_scope(settings.db_url) as session:
        rows = session.execute(
            select(Item, Source)
            .join(Source, Source.id == Item.source_id)
            .where(Item.id.in_(unit.ids), Item.status == ItemStatus.pending)
        ).all()
        groups: dict[tuple[bool, str | None], list[Record]] = {}
        for item, source in rows:
            record = Record(
                item_id=item.id,
                uri=item.uri,
                source_id=item.source_id,
                meta=dict(item.meta or {}),
                local_root=source.root,
            )
            refused = uri_refusal(
                source.kind.value,
                item.uri,
                source_uri=source.uri,
                root=source.root,
                local_list=(source.options or {}).get("local") is True,
            )
            if refused is not None:
                record.drop(refused.reason, refused.detail)
            proxy = (source.options or {}).get("proxy") or None  # a source's own fetch proxy, if it names one
            groups.setdefault((source.allow_private, proxy), []).append(record)
    if not groups:
        return {"processed": 0}
    names = job.params.get("stages") or settings.ingest_stages
    records: list[Record] = []
    for (allow_private, proxy), group in groups.items():  # the SSRF guard is lifted only for sources that allow it
        options = {"allow_private": allow_private, "proxy": proxy, **(job.params.get("stage_options") or {})}
        records += run_overlapped(stages_for(settings, names, options), group)
    start = time.perf_counter()
    with session_scope(settings.db_url) as session:
        outcome = commit_records(session, records, near_threshold=settings.near_dup_threshold)
    _COMMIT_STATS.seconds += time.perf_counter() - start
    _COMMIT_STATS.records_in += len(records)
    _COMMIT_STATS.records_out += outcome["kept"]
    return {"processed": len(records), **outcome}


@dataclass(slots=True)
class _Outcome:
    """What becomes of one pending item: its new status, reason, detail and image."""

    status: ItemStatus
    reason: str | None = None
    detail: str | None = None
    image_id: int | None = None


def commit_records(session: Session, records: list[Record], *, near_threshold: int | None = None) -> dict[str, int]:
    """Write the outcome of each record: image and person rows for kept ones, a reason for the rest.

    A handful of statements per batch, whatever its size: one SELECT of the pending items, one
    multi-row ``INSERT ... ON CONFLICT (sha256) DO NOTHING RETURNING`` for the image rows (bytes that
    another batch recorded first come back as exact duplicates, with no savepoint per row), one
    executemany UPDATE of the items guarded by ``status = 'pending'``, and near-duplicate resolution
    over the whole batch. Idempotent: items already processed (a redelivered unit) are left alone.
    """
    counts = {"kept": 0, "duplicate": 0, "dropped": 0, "failed": 0}
    pending = set(
        session.scalars(
            select(Item.id).where(Item.id.in_([r.item_id for r in records]), Item.status == ItemStatus.pending)
        )
    )
    todo = list({r.item_id: r for r in records if r.item_id in pending}.values())
    near = None
    if near_threshold is not None and any(r.phash and not r.dropped for r in todo):
        dedup.lock_for_dedup(session)
        near = dedup.index_for(session, near_threshold)
    owners: dict[str, Record] = {}  # sha256 -> the record that brings a new image row
    for record in todo:
        if _wants_image(record) and record.sha256 not in owners:
            owners[record.sha256] = record  # type: ignore[index]
    inserted = _insert_images(session, list(owners.values()))
    outcomes = {r.item_id: _outcome(r, owners, inserted) for r in todo}
    lookup = {r.sha256 for r in todo if outcomes[r.item_id].image_id is None and r.sha256}
    if lookup and any(o.status == ItemStatus.duplicate for o in outcomes.values()):
        existing = dedup.known_images(session, lookup)
        for record in todo:
            outcome = outcomes[record.item_id]
            if outcome.status == ItemStatus.duplicate and outcome.image_id is None:
                outcome.image_id = existing.get(record.sha256)
    kept = [r for r in todo if outcomes[r.item_id].status == ItemStatus.kept]
    if near is not None:
        _resolve_near(session, kept, outcomes, near)
    _insert_persons(session, [r for r in kept if outcomes[r.item_id].status == ItemStatus.kept], outcomes)
    _update_items(session, outcomes)
    for record in todo:
        outcome = outcomes[record.item_id]
        counts[outcome.status.value] += 1
        if outcome.status != ItemStatus.kept:
            logs.event(
                log,
                "item.dropped",
                item_id=record.item_id,
                outcome=outcome.status.value,
                reason=outcome.reason,
                detail=(outcome.detail or "")[:200] or None,
                uri=record.uri[:200],
            )
    for record in records:
        record.release_payload()
    return counts


def _wants_image(record: Record) -> bool:
    """Kept records and those a filter dropped after decode get an image row (their bytes are known)."""
    if record.sha256 is None:
        return False
    reason = record.drop_reason
    return reason is None or (reason != DUPLICATE and not reason.startswith(FAILED_PREFIXES))


def _outcome(record: Record, owners: dict[str, Record], inserted: dict[str, int]) -> _Outcome:
    reason = record.drop_reason
    if reason == DUPLICATE:
        return _Outcome(ItemStatus.duplicate, reason, record.error, record.meta.get("duplicate_of_image"))
    if not _wants_image(record):
        return _Outcome(ItemStatus.failed, reason or "unknown", record.error)
    if owners.get(record.sha256) is not record or record.sha256 not in inserted:  # type: ignore[arg-type]
        return _Outcome(ItemStatus.duplicate, DUPLICATE, "same bytes as an image recorded by another batch")
    image_id = inserted[record.sha256]  # type: ignore[index]
    if reason is None:
        return _Outcome(ItemStatus.kept, image_id=image_id)
    return _Outcome(ItemStatus.dropped, reason, record.error, image_id)


def _insert_images(session: Session, records: list[Record]) -> dict[str, int]:
    """Insert one image row per record in one statement; returns ``{sha256: id}`` of the rows inserted.

    Rows whose sha256 is already there (another batch won the race) are skipped by ``ON CONFLICT DO
    NOTHING`` and missing from the result. Sorted by sha256 so concurrent batches lock in one order.
    """
    if not records:
        return {}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as upsert
    else:
        raise ConfigError(f"the ingest commit supports PostgreSQL and SQLite, not {dialect}")
    table = Image.__table__
    rows = [_image_row(r) for r in sorted(records, key=lambda r: r.sha256 or "")]
    stmt = upsert(table).on_conflict_do_nothing(index_elements=["sha256"]).returning(table.c.sha256, table.c.id)
    return dict(session.execute(stmt, rows).all())


def _image_row(record: Record) -> dict[str, Any]:
    return {
        "sha256": record.sha256,
        "phash": record.phash,
        "source_id": record.source_id,
        "source_uri": record.uri,
        "storage_key": record.storage_key or "",
        "width": record.width or 0,
        "height": record.height or 0,
        "format": record.format,
        "bytes": len(record.data) if record.data is not None else 0,
        "status": ImageStatus.kept if record.drop_reason is None else ImageStatus.dropped,
        "drop_reason": record.drop_reason,
        "duplicate_of": None,
        "metrics": {k: float(v) for k, v in record.metrics.items()},
        "meta": record.meta,
        "created_at": utcnow(),
    }


def _resolve_near(session: Session, kept: list[Record], outcomes: dict[int, _Outcome], near: dedup.NearIndex) -> None:
    """Near-duplicate resolution of the batch's new kept images; items of demoted images become duplicates."""
    news = [
        dedup.NewImage(o.image_id, r.phash, r.width or 0, r.height or 0, float(r.metrics.get("blur", 0.0)))
        for r in kept
        if r.phash and (o := outcomes[r.item_id]).image_id is not None
    ]
    demoted = dedup.resolve_batch(session, sorted(news, key=lambda n: n.id), near)
    for record in kept:
        outcome = outcomes[record.item_id]
        if outcome.image_id in demoted:
            better = demoted[outcome.image_id]
            outcome.status, outcome.reason = ItemStatus.duplicate, dedup.NEAR
            outcome.detail = f"near duplicate of image {better}, which is larger or sharper"


def _insert_persons(session: Session, records: list[Record], outcomes: dict[int, _Outcome]) -> None:
    rows = [
        {
            "image_id": outcomes[record.item_id].image_id,
            "index": index,
            "box": [float(v) for v in person.get("box", [])],
            "score": float(person.get("score", 0.0)),
            "keypoints": person.get("keypoints"),
            "face_boxes": person.get("face_boxes"),
            "shot_type": person.get("shot_type"),
            "mask_key": person.get("mask_key"),
            "created_at": utcnow(),
        }
        for record in records
        for index, person in enumerate(record.persons)
    ]
    if rows:
        session.execute(insert(Person.__table__), rows)


def _update_items(session: Session, outcomes: dict[int, _Outcome]) -> None:
    """One executemany UPDATE; ``status = 'pending'`` makes a concurrent redelivery of the unit a no-op."""
    if not outcomes:
        return
    table = Item.__table__
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.status == ItemStatus.pending)
        .values(
            status=bindparam("b_status"),
            reason=bindparam("b_reason"),
            detail=bindparam("b_detail"),
            image_id=bindparam("b_image"),
            attempts=table.c.attempts + 1,
            processed_at=bindparam("b_at"),
        )
    )
    now = utcnow()
    session.execute(
        stmt,
        [
            {
                "b_id": item_id,
                "b_status": o.status,
                "b_reason": o.reason,
                "b_detail": o.detail,
                "b_image": o.image_id,
                "b_at": now,
            }
            for item_id, o in outcomes.items()
        ],
    )
