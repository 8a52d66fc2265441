"""The annotation engine against a real database (SQLite file, migrated with Alembic) and a local store."""

import hashlib
import io

import numpy as np
import pytest
from sqlalchemy import func, select

from annotate_anyone.annotation.dev_calibration import dev_calibrations
from annotate_anyone.annotation.flywheel import flywheel_report, run_round
from annotate_anyone.annotation.labelers.offline import OfflineLabeler
from annotate_anyone.annotation.models import ModelPrediction, ReviewTask
from annotate_anyone.annotation.parsing import decode_map
from annotate_anyone.annotation.parsing.geometric import GeometricParser
from annotate_anyone.annotation.service import (
    add_gold,
    annotate_persons,
    gold_accuracy,
    record_human_label,
)
from annotate_anyone.annotation.settings import AnnotationConfig
from annotate_anyone.annotation.synthetic import TRUTH_CATEGORIES, make_person
from annotate_anyone.annotation.taxonomy import load_taxonomy, split_category
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, Person
from annotate_anyone.db.base import dispose_engines, session_scope
from annotate_anyone.db.migrate import upgrade
from annotate_anyone.settings import Settings
from annotate_anyone.storage.local import LocalStore


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'aa.db'}"
    upgrade(url)
    yield url, LocalStore(tmp_path / "objects")
    dispose_engines()


def engine_settings(tmp_path, config, **sections):
    """Settings for the engine: this annotation config (and other sections), home and model cache in tmp_path."""
    return Settings(home=tmp_path / "home", model_cache=tmp_path / "models", annotation=config, **sections)


def _png(array):
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def add_person(session, store, rgb, box, keypoints, mask, faces, *, name):
    data = _png(rgb)
    sha = hashlib.sha256(data).hexdigest()
    _, key = store.put_content(data, ext="png")
    image = Image(sha256=sha, source_uri=name, storage_key=key, width=rgb.shape[1], height=rgb.shape[0])
    session.add(image)
    session.flush()
    mask_key = f"masks/{sha}_p0.png"
    store.put_bytes(mask_key, _png(mask))
    person = Person(image_id=image.id, index=0, box=list(box), keypoints=np.asarray(keypoints).tolist(),
                    face_boxes=[list(f) for f in faces], mask_key=mask_key)  # fmt: skip
    session.add(person)
    session.flush()
    return person.id


def _counts(session):
    return (
        session.scalar(select(func.count()).select_from(Attribute)),
        session.scalar(select(func.count()).select_from(ModelPrediction)),
        session.scalar(select(func.count()).select_from(ReviewTask)),
    )


def test_annotate_real_photos_route_label_and_caption_idempotently(env, tmp_path):
    pytest.importorskip("mediapipe")
    from PIL import Image as PILImage
    from skimage.data import astronaut

    from annotate_anyone.perception.mediapipe import MediaPipeBackend

    url, store = env
    rgb = astronaut()
    det = MediaPipeBackend(peel=False).detect(PILImage.fromarray(rgb)).persons[0]
    settings = engine_settings(tmp_path, AnnotationConfig())
    with session_scope(url) as s:
        pid = add_person(s, store, rgb, det.box, det.keypoints, det.mask, det.face_boxes, name="astronaut")
        stats = annotate_persons(s, store, [pid], settings=settings)
    n_cats = len(load_taxonomy().categories())
    assert stats["persons"] == 1 and stats["review"] == n_cats  # round 1: no gold yet, every category to humans
    with session_scope(url) as s:
        first = _counts(s)
        person = s.get(Person, pid)
        assert person.shot_type == "upper_body" and person.parsing_model == GeometricParser.model_version
        label_map = decode_map(store.get_bytes(person.parsing_key))
        assert label_map.shape == rgb.shape[:2] and (label_map == 11).any()
        assert person.caption == "a upper body shot"  # no attribute accepted yet: the shot phrase alone (CosmicMan's)
        (task,) = s.scalars(select(ReviewTask)).all()
        assert task.kind == "attributes" and task.status == "queued" and len(task.payload["attributes"]) == n_cats
        entry = next(e for e in task.payload["attributes"] if (e["group"], e["key"]) == (6, "color"))
        assert entry["value"] == "orange" and entry["model_version"] == OfflineLabeler.model_version
        shipped = dev_calibrations()
        for e in task.payload["attributes"]:  # round 0: no gold; the dev-set calibration decides what is covered
            cat = f"{e['group']}.{e['key']}"
            if e["value"] is None:
                assert e["reason"] == "needs_model_or_person"
            elif (e["model_version"], cat) not in shipped:
                assert e["reason"] == "uncalibrated"
            else:
                dev = shipped[(e["model_version"], cat)]
                assert e["reason"] == ("low_confidence" if dev.accuracy >= 0.85 else "gate")
        assert "n/a" in entry["options"] and abs(sum(entry["distribution"].values()) - 1) < 1e-3
    with session_scope(url) as s:
        annotate_persons(s, store, [pid], settings=settings)  # again: same rows, no duplicates
        assert _counts(s) == first == (n_cats, first[1], 1)
        # A human answers in free text; it is mapped onto the allowed values and settles the model label.
        row = record_human_label(s, pid, 6, "color", "Orange", "ann-1", config=settings.annotation)
        assert row.value == "orange" and row.state == AttributeState.human_verified
        record_human_label(s, pid, 6, "color", "orange", "ann-1", config=settings.annotation)  # idempotent
        record_human_label(s, pid, 6, "type", "spacesuit", "ann-1", config=settings.annotation)
        record_human_label(s, pid, 0, "gender", "female", "ann-1", config=settings.annotation)
        model_row = s.scalars(
            select(Attribute).where(
                Attribute.person_id == pid,
                Attribute.group == 6,
                Attribute.key == "color",
                Attribute.origin == AttributeOrigin.model,
            )  # fmt: skip
        ).one()
        assert model_row.state == AttributeState.human_verified
        assert s.scalar(select(func.count()).where(Attribute.origin == AttributeOrigin.human)) == 3
        annotate_persons(s, store, [pid], settings=settings)
        assert s.get(Person, pid).caption == "a upper body shot, a female, orange spacesuit"
        task = s.scalars(select(ReviewTask)).one()
        assert {(e["group"], e["key"]) for e in task.payload["attributes"]}.isdisjoint({(6, "color"), (0, "gender")})
        report = flywheel_report(s, config=settings.annotation)
        # Two model labels settled by agreeing human answers: the top colour and the face model's gender.
        assert report["human_answers"]["total"] == 3 and report["labels"]["human_verified"] == 2


def _synthetic_pool(session, store, n, seed=0):
    truth = {}
    for i in range(n):
        sp = make_person(seed + i)
        pid = add_person(session, store, sp.image, sp.box, sp.keypoints, sp.mask, [sp.face_box], name=f"syn-{i}")
        truth[pid] = sp.truth
    return truth


def test_flywheel_round_ingests_human_labels_and_the_learned_head_improves(env, tmp_path):
    url, store = env
    config = AnnotationConfig(min_gold=5, min_head_labels=6, budget=None)
    settings = engine_settings(tmp_path, config)
    t = load_taxonomy()
    cats = [t.category(*split_category(c)) for c in TRUTH_CATEGORIES]
    with session_scope(url) as s:
        truth = _synthetic_pool(s, store, 60)
        pids = sorted(truth)
        gold, pool = pids[:20], pids[20:]
        add_gold(s, gold)
        report1 = run_round(s, store, settings=settings, categories=cats)
        assert report1["round"] == 1 and report1["models"]["heads"] is None
        assert report1["this_round"]["routed"] == len(pids) * len(cats)  # nothing trusted yet
        for pid in gold:  # the simulated annotator answers the gold set in full
            for c in TRUTH_CATEGORIES:
                record_human_label(s, pid, *split_category(c), truth[pid][c], "sim", config=config)
        for pid in pool[:8]:  # and a few pool items
            for c in TRUTH_CATEGORIES:
                record_human_label(s, pid, *split_category(c), truth[pid][c], "sim", config=config)
        report2 = run_round(s, store, settings=settings, categories=cats)
        small = report2["models"]["heads"]
        acc_small = gold_accuracy(s)[(small, "6.pattern")][0]
        for pid in pool[8:]:  # more human labels arrive
            record_human_label(s, pid, 6, "pattern", truth[pid]["6.pattern"], "sim", config=config)
        report3 = run_round(s, store, settings=settings, categories=cats)
        large = report3["models"]["heads"]
        acc_large = gold_accuracy(s)[(large, "6.pattern")][0]
    assert (small, large) == ("heads-1", "heads-2")
    assert report3["human_answers"]["this_round"] == 0 and report2["human_answers"]["total"] == 28 * 6
    # The pattern is invisible to the offline labelers; the head learns it from human labels.
    assert acc_large >= 0.85 and acc_large > acc_small
    per_cat = report3["per_category"]
    assert (
        per_cat["6.color"]["accuracy"] >= 0.85 and per_cat["6.color"]["model_version"] == OfflineLabeler.model_version
    )
    assert per_cat["6.pattern"]["change"] is not None
    assert report3["this_round"]["auto_accepted"] > 0 and report3["expected_error_auto_accepted"] < 0.15
    assert report3["human_hours"]["saved"] > 0
