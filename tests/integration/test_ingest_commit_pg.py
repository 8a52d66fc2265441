"""The bulk ingest commit on PostgreSQL, with two batches racing over the same bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select, text

from annotate_anyone.catalog.ingest import commit_records
from annotate_anyone.catalog.models import Image, Item, ItemStatus
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db import migrate
from annotate_anyone.db.base import dispose_engines, session_scope
from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.record import Record


@pytest.fixture
def pg(pg_url: str) -> Iterator[str]:
    migrate.upgrade(pg_url)
    yield pg_url
    with session_scope(pg_url) as session:  # leave the shared test database empty for the next test
        for table in ("items", "persons", "images", "jobs", "sources"):
            session.execute(text(f"DELETE FROM {table}"))
    dispose_engines()


@pytest.mark.parametrize("near", [None, 6])
def test_racing_batches_record_each_original_once(pg: str, make_jpeg: Callable[..., bytes], near: int | None) -> None:
    """Batch B commits while A holds its uncommitted rows: B waits, then finds the shared bytes taken."""
    with session_scope(pg) as session:
        source = create_source(session, name=f"race-{near}", kind="folder", uri="/nowhere")
        items = [Item(source_id=source.id, uri=f"/nowhere/{i}.jpg") for i in range(12)]
        session.add_all(items)
        session.flush()
        ids = [item.id for item in items]
    shared = [make_jpeg(100 + i, size=(128, 96)) for i in range(4)]
    own = [make_jpeg(200 + i, size=(128, 96)) for i in range(4)]

    def batch(item_ids: list[int], payloads: list[bytes]) -> list[Record]:
        records = [Record(item_id=i, uri=f"/nowhere/{i}.jpg", data=d) for i, d in zip(item_ids, payloads, strict=True)]
        return DecodeStage(max_pixels=10_000_000).process_batch(records)

    first = batch(ids[:6], [*shared, *own[:2]])
    second = batch(ids[6:], [*reversed(shared), *own[2:]])  # another order: sorted inserts cannot deadlock
    written = threading.Event()
    errors: list[BaseException] = []

    def run_first() -> None:
        try:
            with session_scope(pg) as session:
                commit_records(session, first, near_threshold=near)
                written.set()
                time.sleep(0.3)  # keep the rows uncommitted while the second batch arrives
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            written.set()

    thread = threading.Thread(target=run_first)
    thread.start()
    assert written.wait(30)
    with session_scope(pg) as session:
        outcome = commit_records(session, second, near_threshold=near)
    thread.join(30)
    assert not errors
    assert outcome["duplicate"] >= 4 and sum(outcome.values()) == 6
    with session_scope(pg) as session:
        images = {image.sha256: image for image in session.scalars(select(Image))}
        assert len(images) == 8  # 4 shared + 2 + 2 of their own
        rows = {item.id: item for item in session.scalars(select(Item))}
        assert all(item.status != ItemStatus.pending and item.attempts == 1 for item in rows.values())
        for index in range(4):  # the later batch points its items at the earlier batch's image rows
            a, b = rows[ids[index]], rows[ids[6 + 3 - index]]
            assert a.image_id == b.image_id == images[first[index].sha256].id
            assert b.status == ItemStatus.duplicate and b.reason == "dedup:exact"
