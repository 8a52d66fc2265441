"""The VLM labeler over the generic image-text-to-text API, on tiny random checkpoints of each family built
locally (no hub): loading from the folder, labelling a person crop, and the cached batched option scores
equal to one-option-at-a-time full-sequence log-likelihoods."""

import json

import numpy as np
import pytest

from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.parsing import PersonView
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

FAMILIES = {
    "qwen2_5_vl": "qwen2-vl",
    "qwen2_vl": "qwen2-vl",
    "llava": "llava",
    "idefics3": "idefics3",
    "blip2": "blip2",
    "instructblip": "instructblip",
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def checkpoint(request, tmp_path_factory):
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm

    return request.param, build_tiny_vlm(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def labeler(checkpoint):
    from annotate_anyone.annotation.labelers.vlm import VLMLabeler

    return VLMLabeler.from_checkpoint(checkpoint[1])


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    img[20:110, 30:70] = (200, 40, 40)  # a "person" region
    return img


def test_labels_a_person_crop_with_distributions_over_the_taxonomy(checkpoint, labeler, photo):
    family, _ = checkpoint
    assert labeler.scorer.adapter.family == FAMILIES[family]
    cats = load_taxonomy().categories()
    preds = labeler.label(PersonContext(photo, PersonView((30, 20, 70, 110))), cats)
    assert [p.category for p in preds] == [c.id for c in cats]
    for p, c in zip(preds, cats, strict=True):
        assert set(p.distribution) == set(c.options)
        assert abs(sum(p.distribution.values()) - 1) < 1e-6 and min(p.distribution.values()) > 0
        assert p.value == max(p.distribution, key=p.distribution.get)
    # A different crop is what the model sees: the scores change with the box.
    other = labeler.label(PersonContext(photo, PersonView((0, 0, 90, 40))), cats[:3])
    assert any(a.distribution != b.distribution for a, b in zip(preds[:3], other, strict=True))
    emb = labeler.embed(PersonContext(photo, PersonView((30, 20, 70, 110))))
    assert emb.ndim == 1 and np.isfinite(emb).all()


def test_cached_batched_scores_equal_full_sequence_log_likelihoods(labeler, photo):
    from annotate_anyone.annotation.labelers.vlm import crop_person

    scorer = labeler.scorer
    cats = load_taxonomy().categories()
    qs = [(c.question, c.options) for c in cats[::30]]  # 3 questions, single- and multi-token values
    crops = [
        crop_person(photo, (30, 20, 70, 110)),
        crop_person(photo, (0, 0, 90, 40)),  # another size: another image-token count for Qwen
        crop_person(photo, (34, 24, 74, 114)),  # the first one's size: encoded in one batch with it
    ]
    assert any(len(scorer._option_ids(o)) > 1 for _, opts in qs for o in opts)  # the value-continuation step runs
    scorer.max_batch = 7  # chunking must not change anything
    try:
        batched = scorer.score_many(crops, qs)
    finally:
        scorer.max_batch = 512
    with torch.no_grad():
        for crop, per_q in zip(crops, batched, strict=True):
            for (q, opts), got in zip(qs, per_q, strict=True):
                ref = [float(scorer.option_logprobs([(crop, q, [o])], normalize=False)[0][0]) for o in opts]
                np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
                assert np.all(got < 0)


def test_option_logprobs_is_differentiable_and_normalised(labeler, photo):
    from annotate_anyone.annotation.labelers.vlm import crop_person, option_logprobs

    scorer = labeler.scorer
    cat = load_taxonomy().categories()[0]
    crop = crop_person(photo, (30, 20, 70, 110))
    (lp,) = option_logprobs(scorer, [(crop, cat.question, cat.options)])
    assert lp.shape == (len(cat.options),) and lp.requires_grad
    assert abs(float(lp.exp().sum()) - 1) < 1e-5
    loss = -lp[0]
    loss.backward()
    grads = [p.grad for p in scorer.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    scorer.model.zero_grad(set_to_none=True)


def test_a_folder_that_is_not_a_supported_checkpoint_is_refused(tmp_path):
    from annotate_anyone.annotation.labelers.vlm import OptionScorer

    with pytest.raises(ConfigError, match="config.json"):
        OptionScorer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="not a supported VLM family"):
        OptionScorer(tmp_path)


def test_tiny_checkpoints_are_built_once_into_the_model_cache(tmp_path):
    from annotate_anyone.annotation.tiny_vlm_checkpoints import cached_tiny_vlm

    first = cached_tiny_vlm("idefics3", tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = cached_tiny_vlm("idefics3", tmp_path)
    assert again == first == tmp_path / "tiny-vlm" / "idefics3"
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in (tmp_path / "tiny-vlm").iterdir()] == ["idefics3"]  # no temp folder left


def test_settings_load_the_vlm_with_a_device_map_and_it_scores_the_same(tmp_path, photo, monkeypatch):
    """``AA_MODELS__DEVICE_MAP`` reaches transformers' loader (accelerate places the model; here all on the CPU)."""
    import transformers

    from annotate_anyone.annotation.labelers.clip import model_labelers
    from annotate_anyone.annotation.labelers.vlm import VLMLabeler, crop_person
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm
    from annotate_anyone.settings import ModelsConfig

    ckpt = build_tiny_vlm("llava", tmp_path / "llava")
    taxonomy = load_taxonomy()
    seen: list[object] = []
    original = transformers.AutoModelForImageTextToText.from_pretrained

    def recording(*args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", recording)
    models = ModelsConfig(device="cpu", device_map="auto")
    labelers, vlm = model_labelers(AnnotationConfig(vlm_checkpoint=str(ckpt)), models, taxonomy)
    assert labelers == [vlm] and seen == ["auto"]
    plain = VLMLabeler.from_checkpoint(ckpt)
    assert seen == ["auto", None]
    crop = crop_person(photo, (30, 20, 70, 110))
    qs = [(c.question, c.options) for c in taxonomy.categories()[:3]]
    for got, ref in zip(vlm.scorer.score_many([crop], qs)[0], plain.scorer.score_many([crop], qs)[0], strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
