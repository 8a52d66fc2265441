"""The ingest job on the embedded profile: every item ends with an outcome and a reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from annotate_anyone import jobs
from annotate_anyone.catalog.models import Image, Item, ItemStatus
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.inline import InlineExecutor
from annotate_anyone.jobs.models import JobStatus
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store

STAGES = ["read", "decode", "seen", "store"]


def _folder(tmp_path: Path, make_jpeg: Callable[..., bytes], n: int) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        (folder / ("sub" if i % 2 else "") / f"img{i}.jpg").write_bytes(make_jpeg(i))
    (folder / "copy.jpg").write_bytes(make_jpeg(0))  # same bytes as img0
    (folder / "broken.jpg").write_bytes(make_jpeg(1)[:300])
    (folder / "text.jpg").write_text("not an image")
    return folder


def _ingest(settings: Settings, source_id: int, **params: object) -> int:
    with session_scope(settings.db_url) as session:
        job_id = jobs.create_job(
            session, kind="ingest", params={"source_ids": [source_id], "stages": STAGES, **params}
        ).id
    InlineExecutor(settings).run(job_id)
    return job_id


def test_ingest_records_every_outcome(embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    folder = _folder(tmp_path, make_jpeg, 6)
    with session_scope(embedded.db_url) as session:
        source_id = create_source(session, name="f", kind="folder", uri=str(folder)).id
    job_id = _ingest(embedded, source_id, batch_size=3)
    store = open_store(settings=embedded)
    with session_scope(embedded.db_url) as session:
        job = jobs.get_job(session, job_id)
        assert job.status == JobStatus.succeeded
        assert (job.total, job.done) == (9, 9)
        items = {Path(i.uri).name: i for i in session.scalars(select(Item))}
        assert items["copy.jpg"].status == ItemStatus.duplicate or items["img0.jpg"].status == ItemStatus.duplicate
        assert items["broken.jpg"].status in (ItemStatus.dropped, ItemStatus.failed)
        assert items["broken.jpg"].reason.startswith("decode:")
        assert items["text.jpg"].reason == "decode:not_image"
        kept = session.scalars(select(Image).where(Image.status == "kept")).all()
        assert len(kept) == 6
        for image in kept:  # originals are stored content-addressed and intact
            assert store.sha256(image.storage_key) == image.sha256
        assert job.counters["steps"]["kept"] == 6
        assert job.counters["dropped_by_reason"]["dedup:exact"] == 1


def test_rescan_picks_up_only_new_files(embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    folder = _folder(tmp_path, make_jpeg, 4)
    with session_scope(embedded.db_url) as session:
        source_id = create_source(session, name="f", kind="folder", uri=str(folder)).id
    _ingest(embedded, source_id)
    (folder / "new.jpg").write_bytes(make_jpeg(100))
    second = _ingest(embedded, source_id)
    with session_scope(embedded.db_url) as session:
        job = jobs.get_job(session, second)
        assert job.total == 1 and job.status == JobStatus.succeeded
        assert session.scalar(select(func.count(Item.id))) == 8
        assert session.scalar(select(func.count(Image.id)).where(Image.status == "kept")) == 5


def test_rerunning_a_unit_changes_nothing(embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    folder = _folder(tmp_path, make_jpeg, 3)
    with session_scope(embedded.db_url) as session:
        source_id = create_source(session, name="f", kind="folder", uri=str(folder)).id
    job_id = _ingest(embedded, source_id)
    with session_scope(embedded.db_url) as session:
        before = session.scalar(select(func.count(Image.id)))
        ids = list(session.scalars(select(Item.id)))
        attempts = sorted(session.scalars(select(Item.attempts)))
    with session_scope(embedded.db_url) as session:  # a redelivered unit after the job finished
        jobs.get_job(session, job_id).status = JobStatus.running
    jobs.run_unit(job_id, jobs.Unit.batch(ids), embedded)
    with session_scope(embedded.db_url) as session:
        assert session.scalar(select(func.count(Image.id))) == before
        assert sorted(session.scalars(select(Item.attempts))) == attempts == [1] * len(ids)


def test_near_duplicates_keep_the_larger_image(
    embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]
) -> None:
    import io

    from PIL import Image as PILImage

    folder = tmp_path / "near"
    folder.mkdir()
    original = PILImage.open(io.BytesIO(make_jpeg(7, size=(320, 240))))
    for name, size in (("small.jpg", (160, 120)), ("large.jpg", (320, 240)), ("mid.jpg", (240, 180))):
        buf = io.BytesIO()
        original.resize(size).save(buf, format="JPEG", quality=95)
        (folder / name).write_bytes(buf.getvalue())
    (folder / "other.jpg").write_bytes(make_jpeg(8, size=(320, 240)))
    with session_scope(embedded.db_url) as session:
        source_id = create_source(session, name="n", kind="folder", uri=str(folder)).id
    _ingest(embedded, source_id, batch_size=2)
    with session_scope(embedded.db_url) as session:
        kept = {Path(i.source_uri).name for i in session.scalars(select(Image).where(Image.status == "kept"))}
        assert kept == {"large.jpg", "other.jpg"}
        items = {Path(i.uri).name: i for i in session.scalars(select(Item))}
        large_id = items["large.jpg"].image_id
        for name in ("small.jpg", "mid.jpg"):
            image = session.get(Image, items[name].image_id)
            assert image.drop_reason == "dedup:near" and image.duplicate_of == large_id


def test_taken_down_content_never_reenters(embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    import hashlib

    from annotate_anyone.catalog.takedown import take_down

    folder = tmp_path / "td"
    folder.mkdir()
    banned = make_jpeg(41)
    (folder / "a.jpg").write_bytes(make_jpeg(40))
    with session_scope(embedded.db_url) as session:
        source_id = create_source(session, name="td", kind="folder", uri=str(folder)).id
        take_down(session, sha256=hashlib.sha256(banned).hexdigest(), reason="subject asked")
    (folder / "b.jpg").write_bytes(banned)
    with session_scope(embedded.db_url) as session:
        job_id = jobs.create_job(
            session,
            kind="ingest",
            params={"source_ids": [source_id], "stages": ["read", "decode", "takedown", "seen", "store"]},
        ).id
    InlineExecutor(embedded).run(job_id)
    with session_scope(embedded.db_url) as session:
        items = {Path(i.uri).name: i for i in session.scalars(select(Item))}
        assert items["a.jpg"].status == ItemStatus.kept
        assert (items["b.jpg"].status, items["b.jpg"].reason) == (ItemStatus.dropped, "takedown")
        stored = session.scalars(select(Image).where(Image.sha256 == hashlib.sha256(banned).hexdigest())).one()
        assert stored.storage_key == "" and stored.status == "dropped"  # the bytes were never stored


def test_pool_stages_are_built_with_the_catalogs_checks(embedded: Settings) -> None:
    """The pipeline names no table: ``seen`` and ``takedown`` need the checks ``catalog.ingest`` passes."""
    import pytest

    from annotate_anyone.catalog.ingest import stages_for
    from annotate_anyone.errors import ConfigError
    from annotate_anyone.pipeline.build import build_stages

    for name in ("seen", "takedown"):
        with pytest.raises(ConfigError, match=f"the '{name}' stage asks what the pool holds"):
            build_stages([name], embedded)
    assert [s.name for s in stages_for(embedded, ["takedown", "seen"], {})] == ["takedown", "seen"]
