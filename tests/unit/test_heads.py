"""Learned heads on scikit-learn: the regularised optimum, binary heads as softmax, bank format."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from annotate_anyone.annotation.labelers.heads import BANK_FORMAT, Head, HeadBank, cross_val_proba, train_head
from annotate_anyone.errors import InvalidInput


def _data(n: int, classes: list[str], seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    logits = x[:, : len(classes)] * 2.0 + 0.5 * rng.normal(size=(n, len(classes)))
    return x * 3.0 + 1.0, [classes[i] for i in logits.argmax(1)]  # unscaled features: the head standardises


@pytest.mark.parametrize("classes", [["solid color", "striped"], ["black", "blue", "red"]])
def test_head_reaches_the_optimum_of_mean_cross_entropy_plus_l2(classes: list[str]) -> None:
    x, y = _data(90, classes)
    l2 = 0.05
    head = train_head("6.color", x, y, l2=l2)
    p = head.predict_proba(x)
    onehot = np.eye(len(classes))[[head.classes.index(v) for v in y]]
    xs = (x - head.mean) / head.std
    grad_w = xs.T @ (p - onehot) / len(y) + 2 * l2 * head.weight
    grad_b = (p - onehot).mean(0)
    # a softmax is unchanged by adding one vector to every column: compare the gradient modulo that
    grad_w -= grad_w.mean(1, keepdims=True)
    assert np.abs(grad_w).max() < 1e-4 and np.abs(grad_b).max() < 1e-4
    assert np.mean(p.argmax(1) == onehot.argmax(1)) > 0.8


def test_binary_head_is_a_two_column_softmax_and_stronger_l2_softens_it() -> None:
    x, y = _data(60, ["no", "yes"], seed=3)
    head = train_head("1.hat", x, y)
    assert head.weight.shape == (5, 2) and head.bias.shape == (2,)
    weak = train_head("1.hat", x, y, l2=1.0).predict_proba(x).max(1).mean()
    assert weak < head.predict_proba(x).max(1).mean()


def test_a_fold_with_one_class_gives_a_head_that_says_it() -> None:
    x, _ = _data(10, ["a"])
    head = train_head("1.hat", x, ["yes"] * 10)
    assert head.classes == ["yes"] and np.allclose(head.predict_proba(x[:3]), 1.0)
    oof = cross_val_proba("1.hat", x, ["yes"] * 9 + ["no"])
    assert len(oof) == 10 and all(abs(sum(d.values()) - 1) < 1e-9 for d in oof)
    with pytest.raises(InvalidInput):
        train_head("1.hat", x, ["yes"] * 9)


def test_out_of_fold_probabilities_never_saw_their_row() -> None:
    x, y = _data(50, ["a", "b"], seed=5)
    x[7] += 100.0  # an outlier labelled against its side: a head trained on it would fit it
    oof = cross_val_proba("1.hat", x, y)
    full = train_head("1.hat", x, y).predict_proba(x[7:8])[0]
    assert oof[7] != dict(zip(["a", "b"], full.tolist(), strict=True))
    assert all(set(d) == {"a", "b"} for d in oof)


def _old_bank_bytes() -> bytes:
    """A bank as written before the format number existed (same arrays)."""
    rng = np.random.default_rng(0)
    arrays = {"0_weight": rng.normal(size=(4, 3)), "0_bias": rng.normal(size=3), "0_mean": np.zeros(4),
              "0_std": np.ones(4)}  # fmt: skip
    meta = {"version": "heads-1", "extractor": "x", "heads": {"6.color": {"i": 0, "classes": ["a", "b", "c"],
                                                                           "n_train": 7}}}  # fmt: skip
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return buf.getvalue()


def test_banks_store_coefficients_old_ones_load_and_newer_formats_are_refused() -> None:
    old = HeadBank.from_bytes(_old_bank_bytes())
    head = old.heads["6.color"]
    assert head.n_train == 7 and head.classes == ["a", "b", "c"]
    x, y = _data(40, ["a", "b", "c"])
    bank = HeadBank("heads-2", "x", {"6.color": train_head("6.color", x, y), "1.hat": old.heads["6.color"]})
    data = bank.to_bytes()
    assert b"sklearn" not in data  # numbers and JSON, no pickle of an estimator
    again = HeadBank.from_bytes(data)
    for cat, h in bank.heads.items():
        np.testing.assert_allclose(again.heads[cat].predict_proba(x[:, :4] if cat == "1.hat" else x),
                                   h.predict_proba(x[:, :4] if cat == "1.hat" else x))  # fmt: skip
    z = dict(np.load(io.BytesIO(data)))
    meta = json.loads(z["meta"].tobytes().decode())
    assert meta["format"] == BANK_FORMAT
    meta["format"] = BANK_FORMAT + 1
    z["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **z)
    with pytest.raises(InvalidInput, match="format"):
        HeadBank.from_bytes(buf.getvalue())
    assert isinstance(head, Head)
