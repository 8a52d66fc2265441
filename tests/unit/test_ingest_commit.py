"""The ingest commit path (bulk rows, races on the same bytes, near duplicates), the store stage and reading ahead."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from annotate_anyone.catalog.ingest import commit_records, run_overlapped
from annotate_anyone.catalog.models import Image, ImageStatus, Item, ItemStatus, Person
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope
from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.fetch import ReadStage
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import run_stages
from annotate_anyone.pipeline.store import StoreStage
from annotate_anyone.settings import Settings
from annotate_anyone.storage import content_key
from annotate_anyone.storage.local import LocalStore


def _items(settings: Settings, n: int) -> list[int]:
    with session_scope(settings.db_url) as session:
        source = create_source(session, name="s", kind="folder", uri="/nowhere")
        items = [Item(source_id=source.id, uri=f"/nowhere/{i}.jpg") for i in range(n)]
        session.add_all(items)
        session.flush()
        return [item.id for item in items]


def _decoded(item_id: int, data: bytes) -> Record:
    record = Record(item_id=item_id, uri=f"/nowhere/{item_id}.jpg", data=data)
    DecodeStage(max_pixels=10_000_000).process_batch([record])
    return record


def _resized(base: bytes, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.open(io.BytesIO(base)).resize(size).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _commit(settings: Settings, records: list[Record], near: int | None = None) -> dict[str, int]:
    with session_scope(settings.db_url) as session:
        return commit_records(session, records, near_threshold=near)


def test_same_bytes_in_two_batches_make_one_image(embedded: Settings, make_jpeg: Callable[..., bytes]) -> None:
    """Both batches passed the exact-dedup pre-check: the unique sha256 settles it, with no error."""
    ids = _items(embedded, 4)
    shared = make_jpeg(1)
    first = [_decoded(ids[0], shared), _decoded(ids[1], make_jpeg(2))]
    second = [_decoded(ids[2], shared), _decoded(ids[3], shared)]  # the same bytes twice in one batch too
    assert _commit(embedded, first) == {"kept": 2, "duplicate": 0, "dropped": 0, "failed": 0}
    assert _commit(embedded, second) == {"kept": 0, "duplicate": 2, "dropped": 0, "failed": 0}
    with session_scope(embedded.db_url) as session:
        images = session.scalars(select(Image)).all()
        assert len(images) == 2
        items = {i.id: i for i in session.scalars(select(Item))}
        assert items[ids[2]].image_id == items[ids[3]].image_id == items[ids[0]].image_id
        assert items[ids[2]].reason == "dedup:exact" and items[ids[2]].attempts == 1


def test_commit_is_idempotent(embedded: Settings, make_jpeg: Callable[..., bytes]) -> None:
    ids = _items(embedded, 2)
    unread = Record(item_id=ids[1], uri="x").drop("fetch:http_404", "gone")
    records = [_decoded(ids[0], make_jpeg(5)), unread]
    assert _commit(embedded, records) == {"kept": 1, "duplicate": 0, "dropped": 0, "failed": 1}
    again = [_decoded(ids[0], make_jpeg(5)), Record(item_id=ids[1], uri="x").drop("fetch:http_404", "gone")]
    assert _commit(embedded, again) == {"kept": 0, "duplicate": 0, "dropped": 0, "failed": 0}
    with session_scope(embedded.db_url) as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        assert [i.attempts for i in items] == [1, 1] and (items[1].status, items[1].reason) == (
            "failed",
            "fetch:http_404",
        )
        assert len(session.scalars(select(Image)).all()) == 1


def test_dropped_after_decode_keeps_its_image_row_and_persons_go_with_kept(
    embedded: Settings, make_jpeg: Callable[..., bytes]
) -> None:
    ids = _items(embedded, 2)
    kept, dropped = _decoded(ids[0], make_jpeg(6)), _decoded(ids[1], make_jpeg(7))
    kept.persons = [{"box": [1, 2, 30, 40], "score": 0.9, "shot_type": "upper_body"}]
    dropped.drop("quality:blur", "too soft")
    assert _commit(embedded, [kept, dropped]) == {"kept": 1, "duplicate": 0, "dropped": 1, "failed": 0}
    with session_scope(embedded.db_url) as session:
        items = {i.id: i for i in session.scalars(select(Item))}
        soft = session.get(Image, items[ids[1]].image_id)
        assert (soft.status, soft.drop_reason) == (ImageStatus.dropped, "quality:blur")
        (person,) = session.scalars(select(Person)).all()
        assert person.image_id == items[ids[0]].image_id and person.box == [1.0, 2.0, 30.0, 40.0]


def test_near_duplicates_keep_the_best_within_and_across_batches(
    embedded: Settings, make_jpeg: Callable[..., bytes]
) -> None:
    base, other = make_jpeg(11, size=(320, 240)), make_jpeg(12, size=(320, 240))
    ids = _items(embedded, 5)
    batch = [
        _decoded(ids[0], _resized(base, (160, 120))),
        _decoded(ids[1], _resized(base, (240, 180))),
        _decoded(ids[2], other),
        _decoded(ids[3], _resized(base, (200, 150))),
    ]
    assert _commit(embedded, batch, near=6) == {"kept": 2, "duplicate": 2, "dropped": 0, "failed": 0}
    assert _commit(embedded, [_decoded(ids[4], _resized(base, (320, 240)))], near=6)["kept"] == 1
    with session_scope(embedded.db_url) as session:
        items = {i.id: i for i in session.scalars(select(Item))}
        largest = items[ids[4]].image_id
        kept = {i.id for i in session.scalars(select(Image).where(Image.status == ImageStatus.kept))}
        assert kept == {largest, items[ids[2]].image_id}
        for item_id in (ids[0], ids[1], ids[3]):  # the older kept one was demoted by the larger newcomer
            item = items[item_id]
            assert (item.status, item.reason) == (ItemStatus.duplicate, "dedup:near")
            assert session.get(Image, item.image_id).drop_reason == "dedup:near"
        assert session.get(Image, items[ids[1]].image_id).duplicate_of == largest


def test_store_stage_keys_by_the_decode_hash_and_rewrites_a_torn_object(
    tmp_path: Path, make_jpeg: Callable[..., bytes]
) -> None:
    data = make_jpeg(21)
    record = _decoded(1, data)
    store = LocalStore(tmp_path / "objects")
    key = content_key(record.sha256, "originals", "jpg")
    store.put_bytes(key, data[:100])  # what a crash before the page cache reached the disk may leave
    StoreStage(str(tmp_path / "objects")).process_batch([record])
    assert record.storage_key == key and store.sha256(key) == record.sha256
    mtime = store.path(key).stat().st_mtime_ns
    StoreStage(str(tmp_path / "objects")).process_batch([_decoded(2, data)])
    assert store.path(key).stat().st_mtime_ns == mtime  # an intact object is left alone


def test_local_store_skips_fsync_only_for_originals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = LocalStore(tmp_path / "objects", unsynced_prefixes=["originals"])
    store.put_bytes("originals/ab/cd/abcd.jpg", b"x")
    assert synced == [] and store.get_bytes("originals/ab/cd/abcd.jpg") == b"x"
    store.put_bytes("releases/v1/manifest.json", b"{}")
    store.put_bytes("originals-index.json", b"{}")  # a prefix matches whole folder names only
    assert len(synced) == 2
    assert not store.durable("originals/x.jpg") and store.durable("masks/x.png")
    assert LocalStore(tmp_path / "other", unsynced_prefixes=[]).durable("originals/x.jpg")


def test_reading_ahead_gives_the_same_records_as_a_plain_run(tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    paths = []
    for i in range(37):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(make_jpeg(i) if i != 9 else b"broken")
        paths.append(str(path))
    paths.append(str(tmp_path / "missing.jpg"))

    def run(runner: Callable[..., list[Record]]) -> tuple[list[tuple], list]:
        stages = [ReadStage(), DecodeStage(max_pixels=10_000_000)]
        records = runner(stages, [Record(item_id=i, uri=p) for i, p in enumerate(paths)])
        return [(r.item_id, r.sha256, r.phash, r.drop_reason) for r in records], [s.stats.records_in for s in stages]

    overlapped, counts = run(lambda stages, records: run_overlapped(stages, records, chunk=8))
    assert (overlapped, counts) == run(run_stages)
    assert counts == [38, 37]
    assert {row[3] for row in overlapped} == {None, "decode:not_image", "fetch:not_found"}
