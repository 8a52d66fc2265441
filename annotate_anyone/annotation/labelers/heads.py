"""Learned heads: one small softmax-regression classifier per category over person features.

Trained with scikit-learn's :class:`~sklearn.linear_model.LogisticRegression` (multinomial, L-BFGS) on
human-verified labels; each retrain is a new :class:`HeadBank` version. A bank stores coefficients (numpy
arrays and JSON), never a pickled estimator, so any bank loads with numpy alone and across versions of
scikit-learn.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.taxonomy import Category
from annotate_anyone.errors import InvalidInput

BANK_FORMAT = 1  # the layout of HeadBank.to_bytes; raise it when the arrays change meaning


@dataclass(slots=True)
class Head:
    """Multinomial logistic regression on standardised features."""

    category: str
    classes: list[str]
    weight: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    n_train: int = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((np.atleast_2d(x) - self.mean) / self.std) @ self.weight + self.bias
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def train_head(category: str, x: np.ndarray, y: Sequence[str], *, l2: float = 1e-2, max_iter: int = 1000) -> Head:
    """Fit a head: multinomial logistic regression on standardised features, minimising the mean
    cross-entropy + ``l2`` * ||W||^2 (the bias is not penalised) to convergence with L-BFGS.

    scikit-learn minimises ``C`` * (summed cross-entropy) + ||W||^2 / 2, so ``C`` = 1 / (2 n ``l2``): the
    penalty keeps its weight per answer as the label set grows. No class weights: the heads' probabilities
    are calibrated against the answers as they come. One class only (a cross-validation fold can have
    that) gives a head that always says it."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise InvalidInput("train_head needs as many labels as feature rows, and at least one")
    classes = sorted(set(y))
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    n, d = xs.shape
    if len(classes) == 1:
        return Head(category, classes, np.zeros((d, 1)), np.zeros(1), mean, std, n)
    # Two classes: scikit-learn fits one logit difference v; the softmax optimum is [-v/2, v/2], whose
    # penalty is ||v||^2 / 2, hence twice the C.
    c = 1.0 / (2 * n * l2) * (2 if len(classes) == 2 else 1)
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, tol=1e-6)
    model.fit(xs, np.array([classes.index(v) for v in y]))
    coef, intercept = model.coef_.T, model.intercept_
    if len(classes) == 2:
        coef, intercept = np.hstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return Head(category, classes, np.ascontiguousarray(coef), np.asarray(intercept, np.float64), mean, std, n)


def cross_val_proba(
    category: str, x: np.ndarray, y: Sequence[str], folds: int = 5, **kw: float
) -> list[dict[str, float]]:
    """Out-of-fold class probabilities for every row (what calibration is fitted on): ``folds`` folds of
    one fixed random permutation, each predicted by a head trained on the others (``kw``: :func:`train_head`'s
    options)."""
    n = len(y)
    order = np.random.default_rng(0).permutation(n)
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for f in range(min(folds, n)):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        if len(train) == 0:
            continue
        head = train_head(category, x[train], [y[i] for i in train], **kw)
        for i, p in zip(test, head.predict_proba(x[test]), strict=True):
            out[i] = dict(zip(head.classes, p.tolist(), strict=True))
    return out


@dataclass(slots=True)
class HeadBank:
    """All heads of one retrain: a model version over one feature extractor.

    Serialised as an ``.npz`` of each head's weight, bias and standardisation plus JSON metadata with a
    ``format`` number (banks written before it existed are format 1, the same arrays)."""

    version: str
    extractor: str
    heads: dict[str, Head] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        meta = {"format": BANK_FORMAT, "version": self.version, "extractor": self.extractor, "heads": {}}
        for i, (cat, h) in enumerate(sorted(self.heads.items())):
            meta["heads"][cat] = {"i": i, "classes": h.classes, "n_train": h.n_train}
            for name in ("weight", "bias", "mean", "std"):
                arrays[f"{i}_{name}"] = getattr(h, name)
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> HeadBank:
        z = np.load(io.BytesIO(data))
        meta = json.loads(z["meta"].tobytes().decode())
        if int(meta.get("format", 1)) > BANK_FORMAT:
            raise InvalidInput(
                f"head bank {meta.get('version')!r} has format {meta['format']}; this version reads up to {BANK_FORMAT}"
            )
        bank = cls(meta["version"], meta["extractor"])
        for cat, info in meta["heads"].items():
            i = info["i"]
            bank.heads[cat] = Head(
                cat, info["classes"], z[f"{i}_weight"], z[f"{i}_bias"], z[f"{i}_mean"], z[f"{i}_std"], info["n_train"]
            )
        return bank


class HeadLabeler(Labeler):
    """Predicts the categories its bank has heads for, from ``ctx.features[bank.extractor]``."""

    name = "heads"

    def __init__(self, bank: HeadBank) -> None:
        self.bank = bank
        self.model_version = bank.version

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        x = ctx.features.get(self.bank.extractor)
        if x is None:
            return []
        out = []
        for cat in categories:
            head = self.bank.heads.get(cat.id)
            if head is None:
                continue
            p = head.predict_proba(x)[0]
            dist = {c: float(v) for c, v in zip(head.classes, p, strict=True) if c in cat.options}
            out.append(Prediction.from_distribution(cat, dist, self.model_version))
        return out
