"""Confidence calibration on human-verified labels, its reliability (ECE), and routing thresholds.

A calibrator maps a model's distribution to one whose top probability means what it says: among
labels given confidence 0.9, about 90% are right. Temperature scaling (one parameter per category
and model version) is the default; isotonic regression on the top confidence is the alternative
for larger label sets; :func:`fit_binned` is the one for small label sets (a few dozen answers, as
the round-0 dev set has): few bins with a minimum mass, each shrunk toward the category's base
accuracy, and no bin above 0.9 unless its evidence says so.

ECE here is always 10 equal-width confidence bins, weighted by the share of items in each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from annotate_anyone.errors import InvalidInput

Method = Literal["temperature", "isotonic", "binned", "identity"]
ECE_BINS = 10
CONFIDENT = 0.9  # "confident" in the reports, and the level a binned calibration must earn


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    c = np.asarray(conf, float)
    ok = np.asarray(correct, float)
    if c.size == 0:
        return 0.0
    which = np.minimum((c * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += sel.mean() * abs(ok[sel].mean() - c[sel].mean())
    return float(err)


def _temper(p: np.ndarray, t: float) -> np.ndarray:
    logp = np.log(np.clip(p, 1e-12, 1.0)) / t
    logp -= logp.max(-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(-1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (log-spaced search, then refined)."""

    def nll(t: float) -> float:
        q = _temper(probs, t)
        return float(-np.log(np.clip(q[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
    best = min(grid, key=nll)
    lo, hi = best / 1.2, best * 1.2
    for _ in range(30):  # golden-section refinement
        a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def _pav(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Isotonic regression (scikit-learn's pool-adjacent-violators): a non-decreasing step function
    through (x, y); returns knots, one per block at its largest x.

    Tied x values are pooled first, so equal confidences always get one calibrated value. Each
    block's value is the posterior mean under a uniform prior, (hits + 1) / (n + 2): a block of a
    few items that were all right does not become certainty.
    """
    from sklearn.isotonic import IsotonicRegression

    ux, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=y.astype(float))
    counts = np.bincount(inverse).astype(float)
    fitted = IsotonicRegression(increasing=True).fit(ux, sums / counts, sample_weight=counts).predict(ux)
    ends = np.append(np.flatnonzero(np.diff(fitted) != 0), len(ux) - 1)  # last x of each block
    hits, n = np.add.reduceat(sums, np.r_[0, ends[:-1] + 1]), np.add.reduceat(counts, np.r_[0, ends[:-1] + 1])
    return [float(v) for v in ux[ends]], [float(v) for v in (hits + 1.0) / (n + 2.0)]


def prob_below(hits: int, n: int, level: float) -> float:
    """P(accuracy < ``level``) after ``hits`` right of ``n``, uniform prior: the Beta(hits+1, n-hits+1)
    CDF at ``level``, which equals P(Binomial(n+1, level) >= hits+1)."""
    m = n + 1
    return float(sum(math.comb(m, j) * level**j * (1 - level) ** (m - j) for j in range(hits + 1, m + 1)))


@dataclass(frozen=True, slots=True)
class BinnedFit:
    """Bins of a binned calibration: lower edges on the raw top confidence, calibrated value, and counts."""

    edges: list[float]
    values: list[float]
    counts: list[int]
    hits: list[int]
    capped: list[bool]


def fit_binned(
    conf: Sequence[float],
    correct: Sequence[bool],
    *,
    min_mass: int | None = None,
    prior_strength: float = 4.0,
    cap_level: float = CONFIDENT,
    cap_risk: float = 0.05,
    min_z: float = 2.326,
) -> BinnedFit:
    """A calibration for a few dozen labelled answers: monotone bins of the raw top confidence.

    1. Pool-adjacent-violators on (confidence, right) gives non-decreasing blocks (ties pooled).
    2. Blocks with fewer than ``min_mass`` items (default: a quarter of the items, at least 10) are
       merged into the neighbour whose accuracy is closest, so no value rests on a handful of answers;
       then neighbours whose accuracies do not differ significantly (one-sided two-proportion z-test at 1%,
       z < ``min_z``) are merged, weakest first: on a few dozen items, pool-adjacent-violators also
       finds steps in noise.
    3. A block's value is its accuracy shrunk toward the category's base accuracy by
       ``prior_strength`` pseudo-answers (the posterior mean under a Beta prior centred on it).
    4. A block reaches ``cap_level`` (0.9) only when its evidence supports it: when the posterior
       probability (uniform prior) that its accuracy is below ``cap_level`` is at most ``cap_risk``
       (by default: the 95% lower credible bound of its accuracy is at least 0.9); otherwise its value
       stays just below ``cap_level``. 28 right of 28 or 45 of 46 earn 0.9; 48 of 50 or 24 of 26 do not.
       A block that earns it says no more than the rule of succession, (right + 1) / (n + 2): 45 right
       of 45 says 0.98, not 0.99.
    Edges are placed midway between neighbouring blocks' confidences.
    """
    c = np.asarray(conf, float)
    ok = np.asarray(correct, bool)
    n = c.size
    if n == 0:
        return BinnedFit([0.0], [0.5], [0], [0], [False])
    mass = min(n, min_mass if min_mass is not None else max(10, n // 4))
    ux, inverse = np.unique(c, return_inverse=True)
    hits_at = np.bincount(inverse, weights=ok.astype(float))
    count_at = np.bincount(inverse).astype(float)
    blocks: list[list[float]] = []  # [hits, count, x_min, x_max]
    for xv, h, m in zip(ux, hits_at, count_at, strict=True):
        blocks.append([float(h), float(m), float(xv), float(xv)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            _merge(blocks, len(blocks) - 2)
    while len(blocks) > 1 and min(b[1] for b in blocks) < mass:
        i = min(range(len(blocks)), key=lambda j: blocks[j][1])
        rate = blocks[i][0] / blocks[i][1]
        if i == 0:
            left = False
        elif i == len(blocks) - 1:
            left = True
        else:
            left = abs(blocks[i - 1][0] / blocks[i - 1][1] - rate) <= abs(blocks[i + 1][0] / blocks[i + 1][1] - rate)
        _merge(blocks, i - 1 if left else i)
    while len(blocks) > 1:
        z, i = min((_step_z(blocks[j], blocks[j + 1]), j) for j in range(len(blocks) - 1))
        if z >= min_z:
            break
        _merge(blocks, i)
    base = float(ok.mean())
    edges, values, counts, hits, capped = [], [], [], [], []
    for k, (h, m, x_min, _) in enumerate(blocks):
        value = (h + prior_strength * base) / (m + prior_strength)
        cap = value >= cap_level and prob_below(int(round(h)), int(m), cap_level) > cap_risk
        if value >= cap_level:
            value = min(value, (h + 1) / (m + 2))
        edges.append(0.0 if k == 0 else (blocks[k - 1][3] + x_min) / 2)
        values.append(min(value, cap_level - 0.005) if cap else value)
        counts.append(int(m))
        hits.append(int(round(h)))
        capped.append(bool(cap))
    for k in range(1, len(values)):  # the cap may not reorder the bins
        values[k] = max(values[k], values[k - 1])
    return BinnedFit(edges, values, counts, hits, capped)


def _step_z(lo: list[float], hi: list[float]) -> float:
    """z of the two-proportion test that block ``hi`` is more often right than block ``lo``."""
    pooled = (lo[0] + hi[0]) / (lo[1] + hi[1])
    se = math.sqrt(pooled * (1 - pooled) * (1 / lo[1] + 1 / hi[1]))
    return (hi[0] / hi[1] - lo[0] / lo[1]) / se if se > 0 else 0.0


def _merge(blocks: list[list[float]], i: int) -> None:
    """Merge block ``i + 1`` into block ``i``."""
    h, m, _, x_max = blocks.pop(i + 1)
    blocks[i][0] += h
    blocks[i][1] += m
    blocks[i][3] = x_max


def _step(edges: Sequence[float], values: Sequence[float], x: float) -> float:
    """A binned calibration's value at ``x``: that of the last bin whose lower edge is at or below ``x``."""
    if not edges:
        return 1.0
    return float(values[max(0, int(np.searchsorted(edges, x, side="right")) - 1)])


def _fill_capped(weights: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Share ``total`` in proportion to ``weights`` with no share above ``cap`` (water-filling)."""
    out = np.zeros_like(weights, dtype=float)
    free = np.ones(len(weights), bool)
    left = total
    while free.any() and left > 1e-12:
        w = np.where(free, np.maximum(weights, 0.0), 0.0)
        share = w / w.sum() * left if w.sum() > 0 else free / free.sum() * left
        over = free & (out + share > cap)
        if not over.any():
            return out + share
        left -= float((cap - out[over]).sum())
        out[over] = cap
        free &= ~over
    return out


@dataclass(slots=True)
class Calibrator:
    """One category's calibration for one model version."""

    method: Method = "identity"
    temperature: float = 1.0
    knots_x: list[float] = field(default_factory=list)
    knots_y: list[float] = field(default_factory=list)
    # Binned with option families (e.g. pants, jeans, leggings are all trousers): knots_* calibrate the
    # family of the top answer on its raw family mass, member_* the top answer within its family on
    # its raw share of that mass; options not listed are families of their own.
    families: dict[str, str] = field(default_factory=dict)
    member_x: list[float] = field(default_factory=list)
    member_y: list[float] = field(default_factory=list)

    def calibrate(self, dist: Mapping[str, float]) -> dict[str, float]:
        keys = list(dist)
        p = np.array([float(dist[k]) for k in keys])
        p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
        if self.method == "temperature":
            p = _temper(p, self.temperature)
        elif self.method in ("isotonic", "binned") and self.knots_x:
            top = int(np.argmax(p))
            weights = np.delete(p, top)
            if self.method == "isotonic":
                c = float(np.interp(p[top], self.knots_x, self.knots_y))
            else:
                family = [self.families.get(k, k) for k in keys]
                same = np.array([f == family[top] for f in family])
                mass = float(p[same].sum())
                c_family = _step(self.knots_x, self.knots_y, mass)
                c_member = _step(self.member_x, self.member_y, p[top] / mass) if same.sum() > 1 else 1.0
                c = c_family * c_member
                # the family's other members share what the member step leaves, the other families the rest
                w = np.where(same, c_family * (1 - c_member) * p / max(mass - p[top], 1e-12),
                             (1 - c_family) * p / max(1 - mass, 1e-12))  # fmt: skip
                weights = np.delete(w, top)
            c = min(max(c, 1.0 / len(p), 1e-4), 1 - 1e-4)  # the top stays the top
            p = np.insert(_fill_capped(weights, 1 - c, c * (1 - 1e-6)), top, c)
        return {k: float(v) for k, v in zip(keys, p, strict=True)}

    def params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Calibrator:
        return cls(**dict(params))


@dataclass(slots=True)
class CalibrationResult:
    """A fitted calibrator with its reliability before/after and the routing threshold it implies."""

    calibrator: Calibrator
    n: int
    accuracy: float
    ece_before: float
    ece_after: float
    threshold: float


def fit_calibration(
    dists: Sequence[Mapping[str, float]],
    truths: Sequence[str],
    *,
    method: Method = "temperature",
    target: float = 0.95,
    min_support: int = 10,
    families: Mapping[str, str] | None = None,
) -> CalibrationResult:
    """Fit a calibrator on model distributions and the human answers for the same items.

    ``families`` (binned only) groups options that are kinds of one thing (option -> family): the
    family of the top answer and the answer within it are then calibrated separately (see
    :class:`Calibrator`)."""
    if len(dists) != len(truths):
        raise InvalidInput("calibration needs one human answer per prediction")
    if not dists:
        return CalibrationResult(Calibrator(), 0, 0.0, 0.0, 0.0, target)
    options = sorted({k for d in dists for k in d} | set(truths))
    probs = np.array([[float(d.get(o, 0.0)) for o in options] for d in dists]) + 1e-6
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([options.index(t) for t in truths])
    pred = probs.argmax(1)
    correct = pred == labels
    conf_before = probs.max(1)
    if method == "temperature" and len(dists) >= 2:
        cal = Calibrator("temperature", temperature=fit_temperature(probs, labels))
    elif method == "isotonic" and len(dists) >= 2:
        kx, ky = _pav(conf_before, correct.astype(float))
        cal = Calibrator("isotonic", knots_x=[float(v) for v in kx], knots_y=[float(v) for v in ky])
    elif method == "binned" and len(dists) >= 2:
        cal = _fit_binned_calibrator(dists, truths, dict(families or {}))
    else:
        cal = Calibrator()
    conf_after = np.array([max(cal.calibrate(dict(zip(options, p, strict=True))).values()) for p in probs])
    return CalibrationResult(
        calibrator=cal,
        n=len(dists),
        accuracy=float(correct.mean()),
        ece_before=expected_calibration_error(conf_before, correct),
        ece_after=expected_calibration_error(conf_after, correct),
        threshold=threshold_for_target(conf_after, correct, target, min_support=min_support),
    )


def _fit_binned_calibrator(
    dists: Sequence[Mapping[str, float]], truths: Sequence[str], families: dict[str, str]
) -> Calibrator:
    """A binned calibrator, reading each distribution as :meth:`Calibrator.calibrate` does."""
    fam_conf, fam_ok, member = [], [], []
    for d, truth in zip(dists, truths, strict=True):
        total = max(sum(float(v) for v in d.values()), 1e-12)
        top = max(d, key=lambda k: d[k])
        fam = families.get(top, top)
        siblings = [k for k in d if families.get(k, k) == fam]
        mass = sum(float(d[k]) for k in siblings) / total
        fam_conf.append(mass)
        fam_ok.append(families.get(truth, truth) == fam)
        if fam_ok[-1] and len(siblings) > 1:  # the answer within its family, where there is a choice
            member.append((float(d[top]) / total / max(mass, 1e-12), top == truth))
    fit = fit_binned(fam_conf, fam_ok)
    inner = fit_binned([m[0] for m in member], [m[1] for m in member]) if member else None
    return Calibrator("binned", knots_x=fit.edges, knots_y=fit.values, families=families,
                      member_x=inner.edges if inner else [], member_y=inner.values if inner else [])  # fmt: skip


def threshold_for_target(
    conf: Sequence[float], correct: Sequence[bool], target: float, *, min_support: int = 10
) -> float:
    """The lowest confidence cut whose accepted items (conf >= cut) reach ``target`` accuracy.

    Accuracy above a cut is estimated with one pseudo-error (a Laplace-style guard against a few lucky
    items), and a cut must keep ``min_support`` items. With too little evidence the cut is ``target``
    itself: on calibrated confidences, accepting only items at or above the target keeps the accepted
    set's expected accuracy at or above the target.
    """
    c = np.asarray(conf, float)
    ok = np.asarray(correct, float)
    if c.size < min_support:
        return float(target)
    order = np.argsort(-c)
    c, ok = c[order], ok[order]
    hits = np.cumsum(ok)
    n = np.arange(1, len(c) + 1)
    est = hits / (n + 1.0)
    feasible = np.flatnonzero((est >= target) & (n >= min_support))
    if feasible.size == 0:
        return 1.0  # no cut reaches the target: everything goes to humans
    return float(c[feasible.max()])


@dataclass(slots=True)
class CrossValidated:
    """A calibrator fitted on every item, with reliability measured out of fold (honest on small sets).

    ``ece`` is the out-of-fold ECE (confidences each item got from a calibrator that never saw it,
    ``folds``-fold) averaged over ``repeats`` random splits, ``ece_repeats`` that of each split (how
    much the figure moves with the split); ``confident``, ``confident_wrong`` and ``oof`` are those of
    the first split; ``ece_in_sample`` is the
    calibrator fitted on every item measured on those same items (optimistic, for comparison);
    ``threshold`` is the routing cut on the out-of-fold confidences for the target accuracy.
    """

    calibrator: Calibrator
    n: int
    accuracy: float
    ece_before: float
    ece: float
    confident: int  # items at calibrated confidence >= 0.9 (out of fold)
    confident_wrong: int
    threshold: float
    oof: list[dict[str, float]] = field(default_factory=list)  # each item's out-of-fold calibrated distribution
    method: Method = "identity"
    ece_in_sample: float = 0.0
    confident_in_sample: int = 0
    confident_wrong_in_sample: int = 0
    ece_repeats: list[float] = field(default_factory=list)
    confident_pooled: int = 0  # items at >= 0.9 out of fold, summed over the ``repeats`` splits
    confident_wrong_pooled: int = 0
    ece_chance: float = 0.0  # what a perfectly calibrated labeler would show with these confidences and n


def chance_ece(conf: Sequence[float], *, draws: int = 1000, seed: int = 0) -> float:
    """The mean ECE of a perfectly calibrated labeler with confidences ``conf``: each item right with
    probability its confidence. On a few dozen items ECE is far from 0 even then (its noise floor)."""
    c = np.asarray(conf, float)
    if c.size == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(c, rng.random(c.size) < c) for _ in range(draws)]))


def _top_and_correct(ds: Sequence[Mapping[str, float]], truths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    tops = [max(d, key=lambda k: d[k]) for d in ds]
    conf = np.array([float(d[v]) / max(sum(d.values()), 1e-12) for d, v in zip(ds, tops, strict=True)])
    return conf, np.array([v == t for v, t in zip(tops, truths, strict=True)], bool)


def _folds(n: int, folds: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, int)
    fold_of[order] = np.arange(n) % folds
    return fold_of


def _out_of_fold(
    dists: Sequence[Mapping[str, float]],
    truths: Sequence[str],
    fold_of: np.ndarray,
    method: Method,
    families: Mapping[str, str] | None = None,
) -> list[dict[str, float]]:
    out: list[dict[str, float]] = [{} for _ in dists]
    for f in np.unique(fold_of):
        train = np.flatnonzero(fold_of != f)
        train_d, train_t = [dists[i] for i in train], [truths[i] for i in train]
        cal = fit_calibration(train_d, train_t, method=method, families=families).calibrator
        for i in np.flatnonzero(fold_of == f):
            out[i] = cal.calibrate(dists[i])
    return out


def cross_validated_calibration(
    dists: Sequence[Mapping[str, float]],
    truths: Sequence[str],
    *,
    target: float = 0.95,
    folds: int = 5,
    seed: int = 0,
    methods: Sequence[Method] = ("temperature", "isotonic"),
    repeats: int = 1,
    families: Mapping[str, str] | None = None,
) -> CrossValidated:
    """Fit a calibration and measure it by ``folds``-fold cross-validation.

    Each method is fitted on the other folds and applied to the held-out one; the method whose
    out-of-fold confidences score best (Brier score of the top label) is then fitted on all items.
    With one method there is no choice made on the held-out answers, so the out-of-fold figures are
    an honest estimate; with several, the winner's figures lean a little optimistic. ``repeats`` > 1
    measures the ECE again on other random splits (``ece_repeats``).
    """
    if len(dists) != len(truths):
        raise InvalidInput("calibration needs one truth per prediction")
    n = len(dists)
    if n < 2 * folds:
        raise InvalidInput(f"cross-validated calibration needs at least {2 * folds} items, got {n}")
    fold_of = _folds(n, folds, seed)
    raw, raw_correct = _top_and_correct(dists, truths)
    best: tuple[float, Method, list[dict[str, float]]] | None = None
    for method in methods:
        oof_dists = _out_of_fold(dists, truths, fold_of, method, families)
        conf, correct = _top_and_correct(oof_dists, truths)
        brier = float(np.mean((conf - correct) ** 2))
        if best is None or brier < best[0] - 1e-12:
            best = (brier, method, oof_dists)
    assert best is not None
    _, method, oof_dists = best
    oof, correct = _top_and_correct(oof_dists, truths)
    final = fit_calibration(dists, truths, method=method, families=families).calibrator
    in_sample, in_correct = _top_and_correct([final.calibrate(d) for d in dists], truths)
    repeated = [expected_calibration_error(oof, correct)]
    pooled = [int((oof >= CONFIDENT).sum()), int(((oof >= CONFIDENT) & ~correct).sum())]
    for r in range(1, repeats):
        conf, ok = _top_and_correct(_out_of_fold(dists, truths, _folds(n, folds, seed + r), method, families), truths)
        repeated.append(expected_calibration_error(conf, ok))
        pooled[0] += int((conf >= CONFIDENT).sum())
        pooled[1] += int(((conf >= CONFIDENT) & ~ok).sum())
    confident = oof >= CONFIDENT
    return CrossValidated(
        calibrator=final,
        n=n,
        accuracy=float(correct.mean()),
        ece_before=expected_calibration_error(raw, raw_correct),
        ece=float(np.mean(repeated)),
        confident=int(confident.sum()),
        confident_wrong=int((confident & ~correct).sum()),
        threshold=threshold_for_target(oof, correct, target),
        oof=oof_dists,
        method=method,
        ece_in_sample=expected_calibration_error(in_sample, in_correct),
        confident_in_sample=int((in_sample >= CONFIDENT).sum()),
        confident_wrong_in_sample=int(((in_sample >= CONFIDENT) & ~in_correct).sum()),
        ece_repeats=repeated,
        confident_pooled=pooled[0],
        confident_wrong_pooled=pooled[1],
        ece_chance=chance_ece(oof),
    )
