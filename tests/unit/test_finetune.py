"""Fine-tuning the VLM labeler on human answers (LoRA, option-scoring objective), on a tiny random BLIP-2
built locally and the synthetic people generator: a flywheel round makes a new version whose accuracy on
held-out gold persons is higher than the base checkpoint's, shown per category and per model version."""

import hashlib
import io

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from annotate_anyone.annotation import finetune as ft  # noqa: E402
from annotate_anyone.annotation.settings import AnnotationConfig  # noqa: E402
from annotate_anyone.annotation.synthetic import make_person  # noqa: E402
from annotate_anyone.annotation.taxonomy import load_taxonomy  # noqa: E402
from annotate_anyone.settings import ModelsConfig, Settings  # noqa: E402

CATEGORY = "6.color"  # the top's colour: visible in the pixels, so a tiny model can learn it
TRAIN_OPTIONS = ft.FinetuneOptions(steps=40, lr=1e-2, batch_size=8, seed=0, targets=("q_proj", "v_proj", "lm_head"))


@pytest.fixture(scope="module")
def blip2(tmp_path_factory):
    from annotate_anyone.annotation.tiny_checkpoints import build_tiny_blip2

    return build_tiny_blip2(tmp_path_factory.mktemp("ckpt") / "blip2")


def _examples(seeds):
    from annotate_anyone.annotation.labelers.vlm import crop_person

    cat = load_taxonomy().category(6, "color")
    out = []
    for seed in seeds:
        p = make_person(seed)
        crop = crop_person(p.image, p.box)
        out.append(ft.Example(crop, cat.question, list(cat.options), p.truth[CATEGORY], CATEGORY))
    return out


def test_adapters_go_to_the_language_models_attention_and_the_projector_never_the_vision_tower(blip2):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(blip2))
    names = ft.target_modules(model)
    assert "language_projection" in names
    lm = [n for n in names if n.startswith("language_model.")]
    assert lm and all(n.rsplit(".", 1)[-1] in ("q_proj", "v_proj") for n in lm)
    assert not any(n.startswith(("vision_model.", "qformer.")) for n in names)
    assert "language_projection" not in ft.target_modules(model, projector=False)
    with pytest.raises(Exception, match="none of"):
        ft.target_modules(model, ("no_such_layer",))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava", "idefics3", "instructblip"])
def test_every_family_gets_language_model_adapters_and_labels_with_them(family, tmp_path):
    """Family-agnostic: adapters in the language model (never the vision tower, whose CLIP layers are also
    called q_proj/v_proj in LLaVA), a few training steps, and the version's labeler scores differently."""
    import torch
    from transformers import AutoModelForImageTextToText

    from annotate_anyone.annotation.labelers.vlm import OptionScorer
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm

    ckpt = build_tiny_vlm(family, tmp_path / family)
    model = AutoModelForImageTextToText.from_pretrained(str(ckpt))
    lm = ft._language_model_prefix(model)
    names = ft.target_modules(model)
    assert any(n.startswith(lm + ".") and n.endswith("q_proj") for n in names)
    assert all(n.startswith(lm + ".") or any(p in n for p in ft.PROJECTORS) for n in names)
    assert not any("vision" in n or "visual.blocks" in n for n in names)
    examples = _examples(range(2))
    result = ft.train_lora(ckpt, examples, tmp_path / "adapter", options=ft.FinetuneOptions(steps=2, batch_size=2))
    assert len(result.losses) == 2 and all(np.isfinite(result.losses)) and result.trainable_params > 0
    tuned = ft.load_finetuned_labeler(ckpt, tmp_path / "adapter", f"vlm-ft1:{family}:test")
    question = [(examples[0].question, examples[0].options)]
    after = tuned.scorer.score(examples[0].image, question)[0]
    before = OptionScorer(ckpt).score(examples[0].image, question)[0]
    assert tuned.model_version == f"vlm-ft1:{family}:test" and torch.isfinite(torch.as_tensor(after)).all()
    assert np.abs(np.asarray(after) - np.asarray(before)).max() > 1e-5


def test_training_objective_is_the_labelers_option_scoring(blip2):
    """The loss trained on is the cross-entropy of the labeler's own softmax over option log-likelihoods."""
    import torch

    from annotate_anyone.annotation.labelers.vlm import OptionScorer

    scorer = OptionScorer(blip2)
    examples = _examples(range(3))
    objective = ft.OptionObjective(scorer)
    with torch.no_grad():
        loss = float(objective.loss([objective.encode(e) for e in examples]))
    expected = []
    for e in examples:
        s = np.asarray(scorer.score(e.image, [(e.question, e.options)])[0], np.float64)
        lse = s.max() + np.log(np.exp(s - s.max()).sum())
        expected.append(lse - s[e.options.index(e.answer)])
    assert loss == pytest.approx(float(np.mean(expected)), abs=1e-3)  # the cached scoring path, as labelled
    with pytest.raises(Exception, match="not one of the options"):
        objective.encode(ft.Example(examples[0].image, examples[0].question, ["red", "blue"], "green"))


def _png(array):
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _add(session, store, sp, name):
    from annotate_anyone.catalog.models import Image, Person

    data = _png(sp.image)
    _, key = store.put_content(data, ext="png")
    image = Image(sha256=hashlib.sha256(data).hexdigest(), source_uri=name, storage_key=key,
                  width=sp.image.shape[1], height=sp.image.shape[0])  # fmt: skip
    session.add(image)
    session.flush()
    person = Person(image_id=image.id, index=0, box=list(sp.box), keypoints=np.asarray(sp.keypoints).tolist(),
                    face_boxes=[list(sp.face_box)])  # fmt: skip
    session.add(person)
    session.flush()
    return person.id


def _settings(tmp_path, config: AnnotationConfig, cache: str) -> Settings:
    """Settings with this annotation config, on the CPU, the model cache in ``tmp_path / cache``."""
    return Settings(home=tmp_path / "home", model_cache=tmp_path / cache, annotation=config,
                    models=ModelsConfig(device="cpu"))  # fmt: skip


def test_a_flywheel_round_fine_tunes_the_vlm_and_gold_accuracy_rises(blip2, tmp_path):
    from annotate_anyone.annotation.flywheel import flywheel_report, run_round
    from annotate_anyone.annotation.service import add_gold, engine_for, record_human_label
    from annotate_anyone.db.base import dispose_engines, session_scope
    from annotate_anyone.db.migrate import upgrade
    from annotate_anyone.errors import NotFound
    from annotate_anyone.storage.local import LocalStore

    url = f"sqlite:///{tmp_path / 'aa.db'}"
    upgrade(url)
    store = LocalStore(tmp_path / "objects")
    config = AnnotationConfig(vlm_checkpoint=str(blip2), min_gold=5, budget=None)
    settings = _settings(tmp_path, config, "cache")
    cats = [load_taxonomy().category(6, "color")]
    base = ft.base_version(blip2)
    try:
        with session_scope(url) as s:
            truth = {}
            for i in range(64):
                sp = make_person(5000 + i)
                truth[_add(s, store, sp, f"syn-{i}")] = sp.truth[CATEGORY]
            pids = sorted(truth)
            gold, pool = pids[:24], pids[24:]
            add_gold(s, gold)
            report1 = run_round(s, store, settings=settings, categories=cats, finetune=TRAIN_OPTIONS)
            assert report1["models"]["vlm_finetune"]["version"] is None  # no human answers yet
            assert base in report1["models"]["labelers"]
            for pid in pids:  # the simulated annotators answer the gold set and the pool's routed labels
                record_human_label(s, pid, 6, "color", truth[pid], "sim", config=config)
            report2 = run_round(s, store, settings=settings, categories=cats, finetune=TRAIN_OPTIONS)
            tuned = report2["models"]["vlm_finetune"]
            version = tuned["version"]
            assert tuned["created"] and version.startswith("vlm-ft1:") and tuned["n_examples"] == len(pool)
            assert tuned["loss_last"] < tuned["loss_first"]
            by_version = report2["per_model_version"]
            before, after = by_version[base][CATEGORY], by_version[version][CATEGORY]
            assert before["n"] == after["n"] == len(gold)  # both measured on the held-out gold persons
            assert after["accuracy"] >= before["accuracy"] + 0.2, (before, after)
            assert report2["vlm_versions"][0]["version"] == version
            assert flywheel_report(s, 2, config=config)["per_model_version"][version] == by_version[version]
            # The dashboard's flywheel page shows every version's gold accuracy.
            from annotate_anyone.api.dashboard import flywheel as flywheel_page
            from annotate_anyone.api.templating import templates

            page = flywheel_page(s, settings)
            shown = {v["version"]: v for v in page["versions"]}
            assert shown[version]["per_category"][CATEGORY] == after["accuracy"]
            assert shown[base]["per_category"][CATEGORY] == before["accuracy"]
            html = templates.env.get_template("flywheel.html").render(report=page, coverage=None, nav=[], path="/")
            assert "Model versions on the gold set" in html and version in html and base in html
            # Same answers: the next round keeps the version instead of training another.
            report3 = run_round(s, store, settings=settings, categories=cats, finetune=TRAIN_OPTIONS)
            assert report3["models"]["vlm_finetune"] == {
                "version": version, "created": False, "reason": "same human answers as this version"
            }  # fmt: skip
            # Every version stays selectable; the heads stay the model when no VLM is configured.
            assert engine_for(s, store, settings=settings).vlm.model_version == version
            pick = _settings(tmp_path, config.model_copy(update={"vlm_version": "base"}), "other-cache")
            assert engine_for(s, store, settings=pick).vlm.model_version == base
            pick.annotation = config.model_copy(update={"vlm_version": version})
            assert engine_for(s, store, settings=pick).vlm.model_version == version  # unpacked from the store
            pick.annotation = config.model_copy(update={"vlm_version": "vlm-ft9:nope:0"})
            with pytest.raises(NotFound):
                engine_for(s, store, settings=pick)
            none = _settings(tmp_path, AnnotationConfig(), "cache")
            assert engine_for(s, store, settings=none).vlm is None
            assert ft.finetune_vlm(s, store, settings=none)["version"] is None
    finally:
        dispose_engines()


def test_cli_finetune_says_why_nothing_was_trained_and_lists_versions(blip2, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from annotate_anyone.cli import app
    from annotate_anyone.home.setup import init_home
    from annotate_anyone.settings import get_settings

    monkeypatch.setenv("AA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AA_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AA_DATABASE_URL", raising=False)
    monkeypatch.delenv("AA_PROFILE", raising=False)
    get_settings.cache_clear()
    init_home(get_settings())
    runner = CliRunner()
    result = runner.invoke(app, ["flywheel", "finetune"])
    assert result.exit_code == 1 and "no VLM configured" in result.output
    monkeypatch.setenv("AA_ANNOTATION__VLM_CHECKPOINT", str(blip2))
    get_settings.cache_clear()
    result = runner.invoke(app, ["flywheel", "finetune", "--min-labels", "4"])
    assert result.exit_code == 1 and "0 human answers, 4 needed" in result.output
    result = runner.invoke(app, ["flywheel", "versions"])
    assert result.exit_code == 0 and json.loads(result.output) == []
