"""QualityFilter thresholds and the BRISQUE score on real photos."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image, ImageFilter

from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.quality import BrisqueScorer, QualityFilter
from annotate_anyone.pipeline.record import Record
from annotate_anyone.settings import QualityConfig

ASTRONAUT = Image.fromarray(skimage.data.astronaut())
NO_BRISQUE = QualityConfig(min_side=256, min_area=256 * 256, max_aspect=2.5, min_blur=40, max_brisque=None)


def decoded(image: Image.Image, item_id: int = 0) -> Record:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    record = Record(item_id=item_id, uri=f"mem://{item_id}", data=buf.getvalue())
    DecodeStage(max_pixels=50_000_000).process_batch([record])
    return record


@pytest.fixture(scope="module")
def scorer() -> BrisqueScorer:
    return BrisqueScorer()


def test_thresholds_each_have_a_reason():
    cases = {
        "ok": ASTRONAUT,
        "small": ASTRONAUT.resize((200, 200)),
        "wide": ASTRONAUT.resize((1024, 300)),
        "blurred": ASTRONAUT.filter(ImageFilter.GaussianBlur(6)),
    }
    records = [decoded(image, i) for i, image in enumerate(cases.values())]
    stage = QualityFilter(NO_BRISQUE)
    stage.process_batch(records)
    assert [r.drop_reason for r in records] == [None, "quality:too_small", "quality:aspect", "quality:blur"]
    assert all(r.error for r in records[1:])
    assert stage.stats.records_in == 4 and stage.stats.records_out == 1
    assert dict(stage.stats.dropped) == {"quality:too_small": 1, "quality:aspect": 1, "quality:blur": 1}


def test_min_area_applies_besides_min_side():
    record = decoded(ASTRONAUT.resize((300, 300)))
    config = NO_BRISQUE.model_copy(update={"min_area": 100_000})
    QualityFilter(config).process_batch([record])
    assert record.drop_reason == "quality:too_small"


def test_blur_computed_when_decode_did_not(scorer):
    record = Record(item_id=1, uri="x", width=512, height=512, image=ASTRONAUT)
    QualityFilter(NO_BRISQUE).process_batch([record])
    assert record.drop_reason is None and record.metrics["blur"] > 40


def test_brisque_scores_real_photos_without_numpy_warnings(scorer):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        clean = scorer.score(ASTRONAUT)
        grey = scorer.score(Image.fromarray(skimage.data.camera()))
    rng = np.random.default_rng(0)
    noisy_pixels = np.asarray(ASTRONAUT, dtype=float) + rng.normal(0, 40, (512, 512, 3))
    noisy = scorer.score(Image.fromarray(np.clip(noisy_pixels, 0, 255).astype(np.uint8)))
    assert clean < 40 and grey < 40  # the SVR can score very clean images slightly below 0
    assert noisy > clean + 20


def test_brisque_threshold_drops(scorer):
    config = NO_BRISQUE.model_copy(update={"max_brisque": 5.0})
    keep, drop = decoded(ASTRONAUT), decoded(ASTRONAUT)
    QualityFilter(NO_BRISQUE.model_copy(update={"max_brisque": 80.0}), brisque=scorer).process_batch([keep])
    QualityFilter(config, brisque=scorer).process_batch([drop])
    assert keep.drop_reason is None and "brisque" in keep.metrics
    assert drop.drop_reason == "quality:brisque"


def test_brisque_features_and_score_match_the_package(scorer):
    """Our vectorised features equal the ``brisque`` package's own (scipy) ones, and so do the scores."""
    import cv2
    from brisque import BRISQUE

    package = BRISQUE(url=False)
    for image in (ASTRONAUT, Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))):
        grey = scorer.grey(image).astype(np.float64)
        half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        with np.errstate(all="ignore"):
            theirs = np.array(
                [float(np.ravel(f)[0]) for g in (grey, half) for f in package.calculate_brisque_features(g, 7, 7 / 6)]
            )
            their_score = package.calculate_image_quality_score(theirs)
        np.testing.assert_allclose(scorer.features(grey), theirs, rtol=2e-3, atol=1e-4)
        assert abs(scorer.score(image) - their_score) < 0.05


def test_a_chain_with_a_brisque_stage_scores_it_there_not_in_quality(embedded, scorer):
    from annotate_anyone.pipeline.build import build_stages
    from annotate_anyone.pipeline.quality import BrisqueFilter

    options = {"quality": {"min_side": 256, "min_area": 256 * 256, "max_brisque": 5.0}}
    (alone,) = build_stages(["quality"], embedded, options)
    quality, brisque = build_stages(["quality", "brisque"], embedded, options)
    assert alone.scores_brisque and not quality.scores_brisque and isinstance(brisque, BrisqueFilter)
    first, second = decoded(ASTRONAUT, 1), decoded(ASTRONAUT, 2)
    quality._brisque = brisque._brisque = alone._brisque = scorer
    quality.process_batch([first])
    assert first.drop_reason is None and "brisque" not in first.metrics  # cheap checks only
    brisque.process_batch([first])
    alone.process_batch([second])
    assert first.drop_reason == second.drop_reason == "quality:brisque"
    assert first.metrics["brisque"] == second.metrics["brisque"] > 5.0
