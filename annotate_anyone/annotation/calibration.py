"""Confidence calibration on human-verified labels, its reliability (ECE), and routing thresholds.

A calibrator maps a model's distribution to one whose top probability means what it says: among
labels given confidence 0.9, about 90% are right. Temperature scaling (one parameter per category
and model version) is the default; isotonic regression on the top confidence is the alternative
for larger label sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from annotate_anyone.errors import InvalidInput

Method = Literal["temperature", "isotonic", "identity"]


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
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
    """Pool-adjacent-violators: a non-decreasing step function through (x, y); returns knots.

    Tied x values are pooled first, so equal confidences always get one calibrated value. Each
    block's value is the posterior mean under a uniform prior, (hits + 1) / (n + 2): a block of a
    few items that were all right does not become certainty.
    """
    ux, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=y.astype(float))
    counts = np.bincount(inverse).astype(float)
    blocks: list[list[float]] = []  # [sum_y, count, x_max]
    for xv, s, n in zip(ux, sums, counts, strict=True):
        blocks.append([float(s), float(n), float(xv)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s2, n2, xm = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += n2
            blocks[-1][2] = xm
    return [b[2] for b in blocks], [(b[0] + 1.0) / (b[1] + 2.0) for b in blocks]


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

    def calibrate(self, dist: Mapping[str, float]) -> dict[str, float]:
        keys = list(dist)
        p = np.array([float(dist[k]) for k in keys])
        p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
        if self.method == "temperature":
            p = _temper(p, self.temperature)
        elif self.method == "isotonic" and self.knots_x:
            top = int(np.argmax(p))
            c = float(np.interp(p[top], self.knots_x, self.knots_y))
            c = min(max(c, 1.0 / len(p), 1e-4), 1 - 1e-4)  # the top stays the top
            p = np.delete(p, top)
            p = np.insert(_fill_capped(p, 1 - c, c * (1 - 1e-6)), top, c)
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
) -> CalibrationResult:
    """Fit a calibrator on model distributions and the human answers for the same items."""
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

    ``ece`` and ``confident_wrong`` come from confidences each item got from a calibrator that never
    saw it; ``threshold`` is the routing cut on those confidences for the target accuracy.
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


def cross_validated_calibration(
    dists: Sequence[Mapping[str, float]],
    truths: Sequence[str],
    *,
    target: float = 0.95,
    folds: int = 5,
    seed: int = 0,
    methods: Sequence[Method] = ("temperature", "isotonic"),
) -> CrossValidated:
    """Fit a calibration and measure it by ``folds``-fold cross-validation.

    Each method is fitted on the other folds and applied to the held-out one; the method whose
    out-of-fold confidences score best (Brier score of the top label) is then fitted on all items.
    """
    if len(dists) != len(truths):
        raise InvalidInput("calibration needs one truth per prediction")
    n = len(dists)
    if n < 2 * folds:
        raise InvalidInput(f"cross-validated calibration needs at least {2 * folds} items, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, int)
    fold_of[order] = np.arange(n) % folds

    def top_and_correct(ds: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        tops = [max(d, key=lambda k: d[k]) for d in ds]
        conf = np.array([float(d[v]) / max(sum(d.values()), 1e-12) for d, v in zip(ds, tops, strict=True)])
        return conf, np.array([v == t for v, t in zip(tops, truths, strict=True)])

    raw, raw_correct = top_and_correct(dists)
    best: tuple[float, Method, list[dict[str, float]]] | None = None
    for method in methods:
        oof_dists: list[dict[str, float]] = [{} for _ in range(n)]
        for f in range(folds):
            train = np.flatnonzero(fold_of != f)
            cal = fit_calibration([dists[i] for i in train], [truths[i] for i in train], method=method).calibrator
            for i in np.flatnonzero(fold_of == f):
                oof_dists[i] = cal.calibrate(dists[i])
        conf, correct = top_and_correct(oof_dists)
        brier = float(np.mean((conf - correct) ** 2))
        if best is None or brier < best[0] - 1e-12:
            best = (brier, method, oof_dists)
    assert best is not None
    _, method, oof_dists = best
    oof, correct = top_and_correct(oof_dists)
    final = fit_calibration(dists, truths, method=method).calibrator
    confident = oof >= 0.9
    return CrossValidated(
        calibrator=final,
        n=n,
        accuracy=float(correct.mean()),
        ece_before=expected_calibration_error(raw, raw_correct),
        ece=expected_calibration_error(oof, correct),
        confident=int(confident.sum()),
        confident_wrong=int((confident & ~correct).sum()),
        threshold=threshold_for_target(oof, correct, target),
        oof=oof_dists,
    )


def release_summary(session: Any, **kwargs: Any) -> dict[str, Any]:
    """Expected error and routing figures for a release manifest (see :func:`flywheel.release_summary`)."""
    from annotate_anyone.annotation.flywheel import release_summary as summary

    return summary(session, **kwargs)
