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


# -- binned calibration for a few dozen answers (round 0, the labelled dev set) ----------------------------
def test_prob_below_is_the_beta_posterior_cdf():
    from annotate_anyone.annotation.calibration import prob_below

    assert abs(prob_below(30, 30, 0.9) - 0.9**31) < 1e-12  # all right: P(acc < 0.9) = 0.9^(n+1)
    assert abs(prob_below(0, 0, 0.3) - 0.3) < 1e-12  # no evidence: the uniform prior
    assert prob_below(48, 50, 0.9) > 0.05 > prob_below(45, 46, 0.9)  # 2 wrong in 50 is not 95% sure of 0.9
    assert prob_below(24, 26, 0.9) > prob_below(48, 50, 0.9)  # the same rate on fewer items: less sure


def _items(spec):
    """(confidence, right) pairs: ``spec`` is a list of (confidence, n right, n wrong)."""
    conf, ok = [], []
    for c, right, wrong in spec:
        conf += [c] * (right + wrong)
        ok += [True] * right + [False] * wrong
    return conf, ok


def test_binned_bins_have_a_minimum_mass_and_shrink_toward_the_base_accuracy():
    from annotate_anyone.annotation.calibration import fit_binned

    conf, ok = _items([(0.3, 2, 4), (0.5, 10, 10), (0.7, 15, 5), (0.95, 20, 0)])  # 66 items
    fit = fit_binned(conf, ok)
    assert min(fit.counts) >= max(10, len(conf) // 4) and sum(fit.counts) == len(conf)
    assert fit.values == sorted(fit.values)  # monotone in the raw confidence
    base = np.mean(ok)
    for v, n, h in zip(fit.values, fit.counts, fit.hits, strict=True):
        assert min(h / n, base) - 1e-9 <= v <= max(h / n, base) + 1e-9  # between the bin's rate and the base
    assert fit.edges[0] == 0.0 and all(a < b for a, b in zip(fit.edges, fit.edges[1:], strict=False))
    noise = np.random.default_rng(6)
    flat = fit_binned(noise.uniform(0.9, 1.0, 60), noise.random(60) < 0.75)  # the score says nothing
    assert flat.counts == [60]  # no step found in noise


def test_binned_reaches_point_nine_only_where_the_evidence_supports_it():
    from annotate_anyone.annotation.calibration import Calibrator, fit_binned

    thin = fit_binned(*_items([(0.5, 14, 6), (0.99, 38, 2)]))  # 38 of 40 right: 0.95, but not surely >= 0.9
    assert len(thin.values) == 2 and max(thin.values) < 0.9 and thin.capped[-1]
    firm = fit_binned(*_items([(0.5, 14, 6), (0.99, 30, 0)]))  # 30 of 30 right
    assert 0.9 <= firm.values[-1] <= 31 / 32 and not firm.capped[-1]  # and no more than the rule of succession
    cal = Calibrator("binned", knots_x=firm.edges, knots_y=firm.values)
    low, high = cal.calibrate({"a": 0.5, "b": 0.4, "c": 0.1}), cal.calibrate({"a": 0.999, "b": 0.001, "c": 0.0})
    assert abs(low["a"] - firm.values[0]) < 1e-9 and abs(high["a"] - firm.values[-1]) < 1e-9
    assert abs(sum(low.values()) - 1) < 1e-9 and max(low, key=low.get) == "a"


def test_binned_on_sixty_answers_holds_on_fresh_items():
    """Sixty answers of an overconfident labeler (says 0.95-1.0, right 75% of the time): the calibration
    fitted on them says about 0.75 and keeps that on two thousand fresh answers."""
    from annotate_anyone.annotation.calibration import fit_calibration

    rng = np.random.default_rng(4)

    def draw(n):
        dists, truths, right = [], [], []
        for _ in range(n):
            truth, c = str(rng.choice(OPTIONS)), float(rng.uniform(0.95, 1.0))
            ok = rng.random() < 0.75
            answer = truth if ok else str(rng.choice([o for o in OPTIONS if o != truth]))
            dists.append({o: c if o == answer else (1 - c) / 3 for o in OPTIONS})
            truths.append(truth)
            right.append(ok)
        return dists, truths, np.array(right)

    fresh, _, fresh_ok = draw(1000)
    eces = []
    for _ in range(20):  # twenty dev sets of sixty: the figure for one set carries its sampling error (sd ~0.056)
        dists, truths, _ = draw(60)
        cal = fit_calibration(dists, truths, method="binned").calibrator
        conf = np.array([max(cal.calibrate(d).values()) for d in fresh])
        eces.append(expected_calibration_error(conf, fresh_ok))
        assert not (conf >= 0.9).any()  # nothing it says is confident
    assert np.mean(eces) < 0.1  # the bar of issue 12 (raw confidences: 0.22)


def test_binned_with_families_calibrates_the_kind_and_the_kind_within_it():
    """Pants, jeans and leggings are trousers: the kind (trousers vs shorts vs skirt) is calibrated on the
    kind's raw mass, the answer within trousers on its share of that mass; the product is the answer's."""
    from annotate_anyone.annotation.calibration import cross_validated_calibration, fit_calibration

    rng = np.random.default_rng(5)
    families = {"pants": "trousers", "jeans": "trousers"}
    dists, truths = [], []
    for _ in range(120):  # the kind is right 90% of the time, pants vs jeans 70%; the raw scores say ~0.6
        kind_ok, member_ok = rng.random() < 0.9, rng.random() < 0.7
        truth = "pants" if kind_ok and member_ok else "jeans" if kind_ok else str(rng.choice(["shorts", "skirt"]))
        dists.append({"pants": 0.6, "jeans": 0.3, "shorts": 0.05, "skirt": 0.05})
        truths.append(truth)
    cal = fit_calibration(dists, truths, method="binned", families=families).calibrator
    out = cal.calibrate(dists[0])
    kind, member = cal.knots_y[0], cal.member_y[0]
    assert abs(kind - 0.9) < 0.07 and abs(member - 0.7) < 0.1
    assert abs(out["pants"] - kind * member) < 1e-9 and abs(out["pants"] + out["jeans"] - kind) < 1e-6
    assert max(out, key=out.get) == "pants" and abs(sum(out.values()) - 1) < 1e-9
    cv = cross_validated_calibration(dists, truths, methods=("binned",), families=families, repeats=3)
    assert cv.method == "binned" and len(cv.ece_repeats) == 3 and abs(np.mean(cv.ece_repeats) - cv.ece) < 1e-12
    assert cv.ece < 0.1 and cv.ece_in_sample < 0.1 and cv.calibrator.families == families


def test_chance_ece_is_the_noise_floor_of_a_small_set():
    from annotate_anyone.annotation.calibration import chance_ece

    assert chance_ece(np.full(20000, 0.8), draws=20) < 0.01
    assert 0.03 < chance_ece(np.full(40, 0.8)) < 0.1  # forty perfectly calibrated answers still show ~0.05


def _pav_by_hand(x, y):
    """Pool-adjacent-violators written out: ties pooled, neighbours merged while not increasing."""
    blocks = []  # [hits, n, x_max]
    for xv in np.unique(x):
        blocks.append([float(y[x == xv].sum()), float((x == xv).sum()), float(xv)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            h, n, xm = blocks.pop()
            blocks[-1][0] += h
            blocks[-1][1] += n
            blocks[-1][2] = xm
    return [b[2] for b in blocks], [(b[0] + 1) / (b[1] + 2) for b in blocks]


def test_isotonic_knots_are_the_pooled_blocks_shrunk_by_the_rule_of_succession():
    from annotate_anyone.annotation.calibration import _pav

    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        x = np.round(rng.random(n), int(rng.integers(1, 3)))  # many ties
        y = (rng.random(n) < x).astype(float)
        kx, ky = _pav(x, y)
        ex, ey = _pav_by_hand(x, y)
        np.testing.assert_allclose(kx, ex)
        np.testing.assert_allclose(ky, ey)
        assert all(b > a for a, b in zip(kx, kx[1:], strict=False))
    # 12 answers at distinct confidences, all right: one block, 13/14, not twelve blocks at 2/3
    kx, ky = _pav(np.linspace(0.5, 0.99, 12), np.ones(12))
    assert kx == [0.99] and ky == [13 / 14]
