"""Calibration and routing on synthetic labels whose accuracy is known."""

import numpy as np

from annotate_anyone.annotation.calibration import (
    expected_calibration_error,
    fit_calibration,
    threshold_for_target,
)
from annotate_anyone.annotation.labelers.base import Prediction
from annotate_anyone.annotation.routing import Candidate, Policy, consistency_flags, route
from annotate_anyone.annotation.taxonomy import ATR, load_taxonomy

OPTIONS = ["red", "blue", "green", "black"]


def synthetic(n, rng, sharpen=1.0):
    """A model right with probability c whose reported distribution is sharpened by ``sharpen`` (overconfident)."""
    dists, truths, correct = [], [], []
    for _ in range(n):
        truth = str(rng.choice(OPTIONS))
        c = float(rng.uniform(0.3, 1.0))
        right = rng.random() < c
        pred = truth if right else str(rng.choice([o for o in OPTIONS if o != truth]))
        p = {o: (c if o == pred else (1 - c) / 3) ** sharpen for o in OPTIONS}
        dists.append({o: v / sum(p.values()) for o, v in p.items()})
        truths.append(truth)
        correct.append(right)
    return dists, truths, np.array(correct)


def test_ece_of_a_perfectly_calibrated_model_is_small_and_of_an_overconfident_one_large():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 20000)
    assert expected_calibration_error(conf, rng.random(20000) < conf) < 0.02
    assert expected_calibration_error(conf, rng.random(20000) < conf**3) > 0.15


def test_temperature_and_isotonic_fix_an_overconfident_model():
    rng = np.random.default_rng(1)
    dists, truths, _ = synthetic(1500, rng, sharpen=3.0)  # says 0.99 when right 80% of the time
    test_d, test_t, test_ok = synthetic(1500, rng, sharpen=3.0)
    for method in ("temperature", "isotonic"):
        result = fit_calibration(dists, truths, method=method, target=0.9)
        assert result.ece_after < result.ece_before / 2
        conf = np.array([max(result.calibrator.calibrate(d).values()) for d in test_d])
        assert expected_calibration_error(conf, test_ok) < 0.06  # holds on fresh items
    assert fit_calibration(dists, truths).calibrator.temperature > 1.0  # softened


def test_threshold_meets_the_target_accuracy_on_held_out_items():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0, 1, 4000)
    ok = rng.random(4000) < conf  # calibrated: P(right) = conf
    t = threshold_for_target(conf[:2000], ok[:2000], 0.9)
    assert 0.75 < t < 0.95
    accepted = conf[2000:] >= t
    assert ok[2000:][accepted].mean() >= 0.88
    assert threshold_for_target(conf[:5], ok[:5], 0.9) == 0.9  # too little evidence: the target itself
    assert threshold_for_target(conf, np.zeros(4000, bool), 0.9) == 1.0  # never right: nothing auto-accepted


def _cand(pid, conf, cat=("6", "color"), **kw):
    return Candidate(pid, int(cat[0]), cat[1], "red", conf, {"red": conf}, "m1", **kw)


def test_routing_rules_gate_threshold_consistency_gold_and_budget():
    pols = {"6.color": Policy(True, 0.8, 0.9, 50), "8.color": Policy(False, 0.5, 0.6, 50)}
    cands = [
        _cand(1, 0.95),  # confident, passing category -> auto
        _cand(2, 0.70),  # below threshold -> review
        _cand(3, 0.99, cat=("8", "color")),  # category fails the gate -> review, however confident
        _cand(4, 0.99, flags=["parsing shows a hat, labeler says none"]),  # inconsistent -> review
        _cand(5, 0.99, gold=True),  # gold person -> review
        Candidate(6, 6, "color", None, 0.0),  # nobody answered -> review
    ]
    by_pid = {d.candidate.person_id: d for d in route(cands, pols)}
    assert by_pid[1].action == "auto"
    assert {pid: by_pid[pid].reason for pid in (2, 3, 4, 5, 6)} == {
        2: "low_confidence",
        3: "gate",
        4: "inconsistent",
        5: "gold",
        6: "needs_model_or_person",
    }
    uncalibrated = route([_cand(7, 0.99)], {"6.color": Policy(False, 0.95, uncalibrated=True)})
    assert uncalibrated[0].reason == "uncalibrated"  # an answer nobody has measured yet
    capped = route(cands, pols, budget=2)
    sent = [d for d in capped if d.action == "review"]
    assert len(sent) == 2 and {d.reason for d in sent} == {"gold", "inconsistent"}  # most urgent first
    assert sum(d.action == "deferred" for d in capped) == 3


def test_budgeted_routing_sends_the_most_uncertain_first():
    rng = np.random.default_rng(3)
    cands = [_cand(i, float(c)) for i, c in enumerate(rng.uniform(0, 0.79, 100))]
    decisions = route(cands, {"6.color": Policy(True, 0.8)}, budget=10)
    sent = sorted(d.candidate.confidence for d in decisions if d.action == "review")
    kept = [d.candidate.confidence for d in decisions if d.action == "deferred"]
    assert len(sent) == 10 and max(sent) <= min(kept)


def test_cross_model_consistency_flags():
    t = load_taxonomy()
    no_hat = Prediction(10, "type", "n/a", {"n/a": 0.9, "hat": 0.1}, "vlm:x")
    flags = consistency_flags({"10.type": no_hat}, {}, {ATR["hat"]: 0.05}, frozenset({ATR["hat"]}), t)
    assert flags == {"10.type": ["parsing shows a hat, labeler says none"]}
    assert consistency_flags({"10.type": no_hat}, {}, {ATR["hat"]: 0.05}, frozenset(), t) == {}  # parser can't see hats
    pants = Prediction(8, "type", "pants", {"pants": 0.9}, "vlm:x")
    skirt = {ATR["skirt"]: 0.2}
    assert "8.type" in consistency_flags({"8.type": pants}, {}, skirt, frozenset({ATR["skirt"], ATR["pants"]}), t)
    a = Prediction(6, "color", "red", {"red": 0.9}, "vlm:x")
    b = Prediction(6, "color", "blue", {"blue": 0.95}, "offline-1")
    assert consistency_flags({"6.color": a}, {"6.color": [a, b]}, {}, frozenset(), t) == {
        "6.color": ["offline-1 says blue"]
    }
