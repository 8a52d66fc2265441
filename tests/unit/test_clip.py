"""CLIP-style zero-shot labeler and the CLIP -> VLM cascade, on tiny random CLIP/SigLIP checkpoints built locally."""

import numpy as np
import pytest

from annotate_anyone.annotation.calibration import Calibrator
from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.parsing import PersonView
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.errors import ConfigError

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from annotate_anyone.annotation.tiny_clip_checkpoints import build_tiny_clip

    root = tmp_path_factory.mktemp("clip")
    return {f: build_tiny_clip(root / f, family=f) for f in ("clip", "siglip")}


@pytest.fixture(scope="module")
def labelers(checkpoints):
    from annotate_anyone.annotation.labelers.clip import CLIPLabeler

    return {f: CLIPLabeler(path) for f, path in checkpoints.items()}


def _person(seed: int) -> PersonContext:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    return PersonContext(image, PersonView((10 + seed % 7, 5, 60, 110)))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_loads_from_the_folder_and_labels_a_person(labelers, family):
    labeler = labelers[family]
    assert labeler.family == family and labeler.model_version.startswith("clip:")
    cats = load_taxonomy().categories()
    preds = labeler.label(_person(0), cats)
    assert [p.category for p in preds] == [c.id for c in cats]
    for p, c in zip(preds, cats, strict=True):
        assert set(p.distribution) == set(c.options)
        assert abs(sum(p.distribution.values()) - 1) < 1e-6 and min(p.distribution.values()) > 0
        assert p.value == max(p.distribution, key=p.distribution.get)
    # Different persons get different answers (the image is read).
    other = labeler.label(_person(3), cats)
    assert any(a.distribution != b.distribution for a, b in zip(preds, other, strict=True))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_distribution_is_the_models_own_similarity_over_ensembled_prompts(labelers, family):
    """Recompute one category from the model's full forward pass (processor text + image, together)."""
    import torch

    from annotate_anyone.annotation.labelers.clip import prompt_texts, square_crop

    labeler = labelers[family]
    tax = load_taxonomy()
    cat = tax.category(6, "color")
    ctx = _person(1)
    prompts = prompt_texts(tax, cat)
    texts = [t for o in cat.options for t in prompts[o]]
    padding = "max_length" if family == "siglip" else True
    enc = labeler.processor(text=texts, images=[square_crop(ctx.image, ctx.person.box)], padding=padding,
                            max_length=64, truncation=True, return_tensors="pt")  # fmt: skip
    if family == "siglip":
        enc.pop("attention_mask", None)
    with torch.inference_mode():
        out = labeler.model(**enc)
    t = torch.nn.functional.normalize(out.text_embeds, dim=-1).numpy()
    img = torch.nn.functional.normalize(out.image_embeds, dim=-1).numpy()[0]
    means, i = [], 0
    for o in cat.options:
        m = t[i : i + len(prompts[o])].mean(0)
        means.append(m / np.linalg.norm(m))
        i += len(prompts[o])
    logits = labeler.logit_scale * (np.stack(means) @ img)
    expected = np.exp(logits - logits.max())
    expected /= expected.sum()
    got = labeler.label(ctx, [cat])[0].distribution
    eps = 1e-4  # Prediction's floor (labelers.base.normalize)
    floored = (expected + eps) / (expected + eps).sum()
    assert np.allclose([got[o] for o in cat.options], floored, atol=1e-5)


def test_batching_persons_changes_nothing_and_text_embeddings_are_cached(labelers):
    labeler = labelers["clip"]
    cats = load_taxonomy().categories()[:12]
    ctxs = [_person(s) for s in range(5)]
    labeler.batch_size = 2
    batched = labeler.label_many(ctxs, cats)
    labeler.batch_size = 32
    for ctx, preds in zip(ctxs, batched, strict=True):
        one = labeler.label(ctx, cats)
        for a, b in zip(preds, one, strict=True):
            assert a.value == b.value
            assert np.allclose(list(a.distribution.values()), list(b.distribution.values()), atol=1e-5)
    cached = labeler.text_embeddings(cats)
    again = labeler.text_embeddings(cats)
    assert all(a is b for a, b in zip(cached, again, strict=True))  # not recomputed
    assert cached[0].shape[0] == len(cats[0].options)
    assert np.allclose(np.linalg.norm(cached[0], axis=1), 1.0, atol=1e-5)


def test_temperature_flattens_the_distribution(checkpoints, labelers):
    from annotate_anyone.annotation.labelers.clip import CLIPLabeler

    cat = load_taxonomy().category(6, "color")
    sharp = labelers["clip"].label(_person(2), [cat])[0]
    hot = CLIPLabeler(checkpoints["clip"], temperature=5.0).label(_person(2), [cat])[0]
    assert hot.value == sharp.value and hot.confidence < sharp.confidence
    with pytest.raises(ConfigError):
        CLIPLabeler(checkpoints["clip"], temperature=0)


def test_not_a_clip_checkpoint_is_a_clear_error(tmp_path):
    from annotate_anyone.annotation.labelers.clip import CLIPLabeler
    from annotate_anyone.annotation.tiny_checkpoints import build_tiny_segformer

    with pytest.raises(ConfigError, match="config.json"):
        CLIPLabeler(tmp_path / "missing")
    with pytest.raises(ConfigError, match="segformer"):
        CLIPLabeler(build_tiny_segformer(tmp_path / "seg"))


def test_prompts_come_from_the_taxonomy():
    from annotate_anyone.annotation.labelers.clip import prompt_texts

    tax = load_taxonomy()
    top_color = prompt_texts(tax, tax.category(6, "color"))
    assert "What color is the top? red." in top_color["red"]
    assert "a photo of a person whose top color is red." in top_color["red"]
    assert set(top_color) == set(tax.options(6, "color"))
    belt = prompt_texts(tax, tax.category(12, "present"))
    assert "a photo of a person without a belt." in belt["no"]
    hair = prompt_texts(tax, tax.category(3, "hair_color"))
    assert "a photo of a person whose hair color is blonde." in hair["blonde"]


def test_square_crop_keeps_the_whole_person():
    from annotate_anyone.annotation.labelers.clip import square_crop

    image = np.zeros((200, 100, 3), np.uint8)
    image[20:180, 30:70] = 255
    crop = np.asarray(square_crop(image, (30, 20, 70, 180), margin=0.0))
    assert crop.shape == (160, 160, 3)
    assert (crop == 255).all(axis=2).sum() == 160 * 40  # every person pixel is there, none cut off


# -- cascade ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blip2(tmp_path_factory):
    from annotate_anyone.annotation.tiny_checkpoints import build_tiny_blip2

    return build_tiny_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="module")
def vlm(blip2):
    from annotate_anyone.annotation.labelers.vlm import VLMLabeler

    return VLMLabeler.from_checkpoint(blip2)


def test_cascade_sends_only_unsure_categories_to_the_vlm(labelers, vlm):
    from annotate_anyone.annotation.labelers.clip import CascadeLabeler

    clip = labelers["clip"]
    cats = load_taxonomy().categories()[:8]
    ctx = _person(4)
    first = {p.category: p for p in clip.label(ctx, cats)}
    # Calibrate half the categories with a sharpening temperature; the rest stay uncalibrated.
    cals = {c.id: Calibrator("temperature", temperature=0.05) for c in cats[:4]}
    cascade = CascadeLabeler(clip, vlm, gate=0.5, calibrators=cals)
    preds = cascade.label(ctx, cats)
    clip_preds = [p for p in preds if p.model_version == clip.model_version]
    vlm_preds = [p for p in preds if p.model_version == vlm.model_version]
    assert [p.category for p in clip_preds] == [c.id for c in cats]  # the first pass answers everything
    expected = [
        c.id for c in cats if c.id not in cals or max(cals[c.id].calibrate(first[c.id].distribution).values()) < 0.5
    ]
    assert [p.category for p in vlm_preds] == expected
    assert set(expected) >= {c.id for c in cats[4:]}  # uncalibrated: escalated
    assert cascade.stats.escalated == len(expected) and cascade.stats.categories == len(cats)
    # Gate 0: every calibrated category is trusted; trusting raw confidences too sends nothing on.
    assert not [p for p in CascadeLabeler(clip, vlm, gate=0.0, trust_uncalibrated=True).label(ctx, cats)
                if p.model_version == vlm.model_version]  # fmt: skip
    with pytest.raises(ConfigError):
        CascadeLabeler(clip, vlm, gate=1.5)


def test_cascade_calibrated_on_gold_escalates_what_clip_gets_wrong(labelers, vlm):
    """Gold where CLIP is always right on one category and always wrong on another: after calibration the
    right one stays with CLIP, the wrong one goes to the VLM."""
    from annotate_anyone.annotation.labelers.clip import CascadeLabeler

    clip = labelers["clip"]
    tax = load_taxonomy()
    right, wrong = tax.category(6, "color"), tax.category(8, "type")
    ctxs = [_person(s) for s in range(12)]
    firsts = clip.label_many(ctxs, [right, wrong])
    truths = []
    for preds in firsts:
        by = {p.category: p for p in preds}
        worst = min(by[wrong.id].distribution, key=by[wrong.id].distribution.get)
        truths.append({right.id: by[right.id].value, wrong.id: worst})
    cascade = CascadeLabeler(clip, vlm, gate=0.6)
    results = cascade.fit_on_gold(ctxs, truths, [right, wrong], min_n=10)
    assert results[right.id].accuracy == 1.0 and results[wrong.id].accuracy == 0.0
    preds = cascade.label(_person(20), [right, wrong])
    assert [p.category for p in preds if p.model_version == vlm.model_version] == [wrong.id]
    assert cascade.stats.by_category == {wrong.id: 1}
    # Too little gold: no calibrator, so the category is escalated.
    few = CascadeLabeler(clip, vlm, gate=0.6)
    assert few.fit_on_gold(ctxs[:5], truths[:5], [right, wrong], min_n=10) == {}
    assert {c.id for c in few.unsure(clip.label(_person(20), [right, wrong]), [right, wrong])} == {right.id, wrong.id}


def test_calibrators_from_session_reads_the_services_rows(embedded):
    from annotate_anyone.annotation.labelers.clip import calibrators_from_session
    from annotate_anyone.annotation.models import CalibrationRecord
    from annotate_anyone.db.base import session_scope

    with session_scope(embedded.db_url) as session:
        session.add(CalibrationRecord(model_version="clip:x:1", group=6, key="color", method="temperature",
                                      params=Calibrator("temperature", temperature=2.0).params()))  # fmt: skip
        session.add(CalibrationRecord(model_version="vlm:y:1", group=6, key="type", method="identity",
                                      params=Calibrator().params()))  # fmt: skip
    with session_scope(embedded.db_url) as session:
        cals = calibrators_from_session(session, "clip:x:1")
    assert list(cals) == ["6.color"] and cals["6.color"].temperature == 2.0


def test_annotate_persons_runs_the_cascade_from_settings_and_reads_its_calibration(tmp_path, checkpoints, blip2):
    """The engine builds CLIP -> VLM from settings; the VLM answers what the stored calibration leaves unsure."""
    from sqlalchemy import select

    from annotate_anyone.annotation.models import CalibrationRecord, ModelPrediction
    from annotate_anyone.annotation.service import annotate_persons
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.annotation.synthetic import make_person
    from annotate_anyone.db.base import dispose_engines, session_scope
    from annotate_anyone.db.migrate import upgrade
    from annotate_anyone.settings import ModelsConfig
    from annotate_anyone.storage.local import LocalStore
    from tests.integration.test_annotation_service import add_person, engine_settings

    url = f"sqlite:///{tmp_path / 'aa.db'}"
    upgrade(url)
    store = LocalStore(tmp_path / "objects")
    settings = engine_settings(
        tmp_path,
        AnnotationConfig(vlm_checkpoint=str(blip2)),
        models=ModelsConfig(clip_checkpoint=str(checkpoints["clip"]), cascade_gate=0.5, device="cpu", batch_size=2),
    )
    tax = load_taxonomy()
    cats = [tax.category(6, "color"), tax.category(6, "pattern"), tax.category(8, "type")]

    def persons(session, seeds):
        return [add_person(session, store, sp.image, sp.box, sp.keypoints, sp.mask, [sp.face_box], name=f"p{i}")
                for i, sp in ((i, make_person(i)) for i in seeds)]  # fmt: skip

    def versions(session, pids):
        rows = session.scalars(select(ModelPrediction).where(ModelPrediction.person_id.in_(pids))).all()
        by_kind: dict[str, set[tuple[int, str]]] = {}
        for r in rows:
            by_kind.setdefault(r.model_version.split(":", 1)[0], set()).add((r.person_id, f"{r.group}.{r.key}"))
        return rows, by_kind

    with session_scope(url) as s:
        first = persons(s, range(3))
        stats = annotate_persons(s, store, first, settings=settings, categories=cats)
        rows, by_kind = versions(s, first)
        everything = {(p, c.id) for p in first for c in cats}
        assert by_kind["clip"] == everything and by_kind["vlm"] == everything  # nothing calibrated: all escalated
        assert stats["persons"] == 3
        clip_version = next(r.model_version for r in rows if r.model_version.startswith("clip:"))
        # Human answers calibrated CLIP's top colour sharply: from now on the VLM is not asked about it.
        s.add(CalibrationRecord(model_version=clip_version, group=6, key="color", method="temperature",
                                params=Calibrator("temperature", temperature=0.01).params()))  # fmt: skip
        s.flush()
        second = persons(s, range(3, 6))
        annotate_persons(s, store, second, settings=settings, categories=cats)
        _, by_kind = versions(s, second)
        assert by_kind["clip"] == {(p, c.id) for p in second for c in cats}
        assert by_kind["vlm"] == {(p, c.id) for p in second for c in cats if c.id != "6.color"}
    dispose_engines()


def test_dtype_and_device_map_options_load_and_label(checkpoints, labelers):
    """bf16 weights (the CUDA default) and a transformers device_map load the same folder and agree with fp32."""
    import torch

    from annotate_anyone.annotation.labelers.clip import CLIPLabeler

    cat = load_taxonomy().category(6, "color")
    ref = labelers["clip"].label(_person(5), [cat])[0]
    half = CLIPLabeler(checkpoints["clip"], dtype=torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    got = half.label(_person(5), [cat])[0]
    assert max(abs(got.distribution[o] - ref.distribution[o]) for o in cat.options) < 0.02
    mapped = CLIPLabeler(checkpoints["clip"], device_map="auto")
    assert mapped.device == "cpu"  # one CPU here: accelerate places every layer on it
    assert np.allclose(
        [mapped.label(_person(5), [cat])[0].distribution[o] for o in cat.options],
        [ref.distribution[o] for o in cat.options],
        atol=1e-5,
    )
