"""Learned heads: one small softmax-regression classifier per category over person features.

Trained (numpy only) on human-verified labels; each retrain is a new :class:`HeadBank` version.
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


def train_head(
    category: str, x: np.ndarray, y: Sequence[str], *, l2: float = 1e-2, iters: int = 300, lr: float = 0.05
) -> Head:
    """Fit a head with full-batch Adam on the mean cross-entropy + ``l2`` * ||W||^2."""
    x = np.asarray(x, np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise InvalidInput("train_head needs as many labels as feature rows, and at least one")
    classes = sorted(set(y))
    idx = np.array([classes.index(v) for v in y])
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    n, d = xs.shape
    k = len(classes)
    onehot = np.eye(k)[idx]
    w, b = np.zeros((d, k)), np.log(onehot.mean(0) + 1e-3)
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, iters + 1):
        z = xs @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        grads = [xs.T @ g + 2 * l2 * w, g.sum(0)]
        for i, (param, grad) in enumerate(zip((w, b), grads, strict=True)):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad * grad
            param -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return Head(category, classes, w, b, mean, std, n)


def cross_val_proba(
    category: str, x: np.ndarray, y: Sequence[str], folds: int = 5, **kw: float
) -> list[dict[str, float]]:
    """Out-of-fold class probabilities for every row (what calibration is fitted on)."""
    n = len(y)
    order = np.random.default_rng(0).permutation(n)
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for f in range(min(folds, n)):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        if len(train) == 0 or len(set(y[i] for i in train)) < 1:
            continue
        head = train_head(category, x[train], [y[i] for i in train], **kw)
        for i, p in zip(test, head.predict_proba(x[test]), strict=True):
            out[i] = dict(zip(head.classes, p.tolist(), strict=True))
    return out


@dataclass(slots=True)
class HeadBank:
    """All heads of one retrain: a model version over one feature extractor."""

    version: str
    extractor: str
    heads: dict[str, Head] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        meta = {"version": self.version, "extractor": self.extractor, "heads": {}}
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
