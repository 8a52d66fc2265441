"""Quality control: gold accuracy, agreement on overlapped tasks, aggregation, flagging.

Aggregation is majority vote or Dawid-Skene. :func:`dawid_skene` is the EM over many items with one
confusion matrix per annotator (and a class prior); :func:`fit_confusions` runs it per category over the
answers of gold tasks (their known answers held fixed) and of overlapped tasks, each annotator's matrix
drawn toward the one-coin matrix of their gold accuracy, and :meth:`Confusions.vote` settles one item with
it. :func:`weighted_vote` is the
one-coin decision (log-odds weights from gold accuracy alone): what :meth:`Confusions.vote` reduces to for
a category without overlapped answers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import median

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.review.models import ReviewAnnotator, ReviewAnswer

ACTIVE = "active"


@dataclass(frozen=True)
class Vote:
    """The aggregated answer for one item: value and its support (share or posterior)."""

    value: str
    support: float
    distribution: dict[str, float]


def majority(votes: Mapping[str, str]) -> Vote:
    """Most frequent value; ties go to the value given first."""
    counts = Counter(votes.values())
    order = {v: i for i, v in reversed(list(enumerate(votes.values())))}
    value = max(counts, key=lambda v: (counts[v], -order[v]))
    total = sum(counts.values())
    return Vote(value, counts[value] / total, {v: c / total for v, c in counts.items()})


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored in UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def reliability(correct: int, total: int, prior: tuple[float, float] = (4.0, 1.0)) -> float:
    """Annotator accuracy estimate: Beta-smoothed gold accuracy (prior 0.8 worth 5 answers)."""
    a, b = prior
    return (correct + a) / (total + a + b)


def weighted_vote(votes: Mapping[str, str], accuracy: Mapping[str, float], n_options: int) -> Vote:
    """One-coin Dawid-Skene: each annotator's vote weighs ``log(p (K-1) / (1-p))``; returns the posterior."""
    k = max(2, n_options)
    scores: dict[str, float] = defaultdict(float)
    for annotator, value in votes.items():
        p = min(max(accuracy.get(annotator, 0.8), 1e-3), 1 - 1e-3)
        scores[value] += math.log(p * (k - 1) / (1 - p))
    top = max(scores.values())
    exp = {v: math.exp(s - top) for v, s in scores.items()}
    norm = sum(exp.values())
    posterior = {v: e / norm for v, e in exp.items()}
    value = max(posterior, key=lambda v: (posterior[v], -list(votes.values()).index(v)))
    return Vote(value, posterior[value], posterior)


def _one_coin(accuracy: float, k: int) -> np.ndarray:
    """The confusion matrix of an annotator right with probability ``accuracy``, wrong uniformly."""
    p = min(max(accuracy, 1e-3), 1 - 1e-3)
    return np.full((k, k), (1 - p) / max(k - 1, 1)) + np.eye(k) * (p - (1 - p) / max(k - 1, 1))


def dawid_skene(
    items: Mapping[Hashable, Mapping[str, str]],
    labels: list[str],
    iterations: int = 50,
    tol: float = 1e-6,
    *,
    accuracy: Mapping[str, float] | None = None,
    prior_strength: float = 2.0,
    known: Mapping[Hashable, str] | None = None,
) -> tuple[dict[Hashable, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Full Dawid-Skene EM. ``items``: item -> {annotator: label}. Returns posteriors and confusion matrices
    (annotator -> true label -> given label -> probability).

    Each row of an annotator's matrix gets ``prior_strength`` pseudo-answers spread as the one-coin matrix
    of their ``accuracy`` (default 0.8, the :func:`reliability` prior), so a matrix rests on few answers
    only as far as they say something. Posteriors start from vote shares; items in ``known`` (item -> the
    right label, e.g. gold) keep that answer throughout."""
    posteriors, matrices, _ = _em(items, labels, iterations, tol, accuracy or {}, prior_strength, known)
    named = {
        a: {labels[t]: {labels[g]: float(m[t, g]) for g in range(len(labels))} for t in range(len(labels))}
        for a, m in matrices.items()
    }
    return {item: {labels[j]: float(p[j]) for j in range(len(labels))} for item, p in posteriors.items()}, named


def _em(
    items: Mapping[Hashable, Mapping[str, str]],
    labels: list[str],
    iterations: int,
    tol: float,
    accuracy: Mapping[str, float],
    prior_strength: float,
    known: Mapping[Hashable, str] | None = None,
) -> tuple[dict[Hashable, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    keys = list(items)
    annotators = sorted({a for votes in items.values() for a in votes})
    col = {a: i for i, a in enumerate(annotators)}
    # given[i, a] = label index annotator a gave item i, -1 where they did not answer
    given = np.full((len(keys), len(annotators)), -1)
    for i, item in enumerate(keys):
        for a, label in items[item].items():
            given[i, col[a]] = index[label]
    answered = given >= 0
    post = np.zeros((len(keys), k))
    for j in range(k):
        post[:, j] = (given == j).sum(1)
    post /= np.maximum(post.sum(1, keepdims=True), 1)
    clamp = np.array([item in (known or {}) for item in keys], bool)
    if clamp.any():  # items with a known answer (gold) keep it: they anchor the matrices
        fixed = np.eye(k)[[index[known[item]] for item in keys if item in known]]
        post[clamp] = fixed
    pseudo = np.stack([_one_coin(accuracy.get(a, 0.8), k) * prior_strength for a in annotators]) if annotators else None
    confusion = np.zeros((len(annotators), k, k))
    prior = np.full(k, 1.0 / k)
    for _ in range(iterations):
        prior = post.sum(0) + 1e-2
        prior /= prior.sum()
        for c in range(len(annotators)):  # M-step: confusion[a][true][given]
            rows = answered[:, c]
            counts = pseudo[c] + post[rows].T @ np.eye(k)[given[rows, c]]
            confusion[c] = counts / counts.sum(1, keepdims=True)
        logp = np.tile(np.log(prior), (len(keys), 1))  # E-step
        for c in range(len(annotators)):
            rows = answered[:, c]
            logp[rows] += np.log(confusion[c][:, given[rows, c]]).T
        logp -= logp.max(1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(1, keepdims=True)
        if clamp.any():
            new[clamp] = fixed
        change = float(np.abs(new - post).max()) if len(keys) else 0.0
        post = new
        if change < tol:
            break
    return dict(zip(keys, post, strict=True)), {a: confusion[c] for a, c in col.items()}, prior


@dataclass
class Confusions:
    """Dawid-Skene models per category: class prior and each annotator's confusion matrix (true -> given).

    :meth:`vote` settles one item: the posterior of each value is the prior times, for every annotator, the
    probability of what they said given that value; an annotator (or a value) the model has not seen
    counts with the one-coin matrix of their gold accuracy, a category without a model with a flat prior
    (the :func:`weighted_vote` decision). The answer is chosen among the values someone gave."""

    labels: dict[str, list[str]] = field(default_factory=dict)
    prior: dict[str, np.ndarray] = field(default_factory=dict)
    matrices: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def vote(self, category: str, votes: Mapping[str, str], accuracy: Mapping[str, float], n_options: int) -> Vote:
        labels = list(self.labels.get(category, []))
        labels += [v for v in dict.fromkeys(votes.values()) if v not in labels]
        k = max(2, n_options, len(labels))
        fitted = self.matrices.get(category, {})
        known = len(self.labels.get(category, []))
        logp = np.zeros(len(labels))
        if category in self.prior:
            logp[:known] = np.log(self.prior[category])
            logp[known:] = np.log(1e-2 / max(known, 1))
        for annotator, value in votes.items():
            g = labels.index(value)
            p = min(max(accuracy.get(annotator, 0.8), 1e-3), 1 - 1e-3)
            column = np.where(np.arange(len(labels)) == g, p, (1 - p) / (k - 1))
            if annotator in fitted and g < known:
                column[:known] = fitted[annotator][:, g]
            logp += np.log(np.clip(column, 1e-12, 1.0))
        given = list(dict.fromkeys(votes.values()))  # decide among what was said, first given first on a tie
        scores = np.array([logp[labels.index(v)] for v in given])
        e = np.exp(scores - scores.max())
        posterior = {v: float(x) for v, x in zip(given, e / e.sum(), strict=True)}
        value = max(given, key=lambda v: (posterior[v], -given.index(v)))
        return Vote(value, posterior[value], posterior)


def fit_confusions(
    items: Mapping[str, Mapping[Hashable, Mapping[str, str]]],
    options: Mapping[str, Sequence[str]],
    accuracy: Mapping[str, float],
    *,
    known: Mapping[str, Mapping[Hashable, str]] | None = None,
    prior_strength: float = 2.0,
) -> Confusions:
    """Dawid-Skene per category over ``items`` (category -> item -> {annotator: value}); ``known``
    (category -> item -> right value) marks the gold items among them. Labels are the category's
    ``options`` plus any value given. Items that are neither gold nor answered by two or more annotators
    say nothing about anyone's confusions and are left out."""
    out = Confusions()
    for category, by_item in items.items():
        truth = dict((known or {}).get(category, {}))
        used = {i: v for i, v in by_item.items() if v and (len(v) >= 2 or i in truth)}
        if not used:
            continue
        labels = list(options.get(category, []))
        given = {v for votes in used.values() for v in votes.values()} | {truth[i] for i in used if i in truth}
        labels += sorted(given - set(labels))
        _, matrices, prior = _em(used, labels, 50, 1e-6, accuracy, prior_strength, truth)
        out.labels[category], out.prior[category], out.matrices[category] = labels, prior, matrices
    return out


def pairwise_agreement(votes: Mapping[str, str]) -> tuple[int, int]:
    """(agreeing pairs, pairs) among the annotators of one item."""
    values = list(votes.values())
    pairs = len(values) * (len(values) - 1) // 2
    agree = sum(c * (c - 1) // 2 for c in Counter(values).values())
    return agree, pairs


# ---------------------------------------------------------------------- database views


def gold_accuracy(session: Session) -> dict[str, tuple[int, int]]:
    """Per annotator: (correct, total) over their active gold answers."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for annotator, correct, total in session.execute(
        select(ReviewAnswer.annotator, ReviewAnswer.gold_correct, ReviewAnswer.gold_total).where(
            ReviewAnswer.is_gold.is_(True), ReviewAnswer.status == ACTIVE
        )
    ):
        out[annotator][0] += correct
        out[annotator][1] += total
    return {a: (c, t) for a, (c, t) in out.items()}


def settling_evidence(session: Session) -> tuple[dict[str, dict[int, dict[str, str]]], dict[str, dict[int, str]]]:
    """What :func:`fit_confusions` learns from: per category, task -> {annotator: value} over the active
    answers of gold tasks and of tasks answered by two or more annotators, and per category the gold
    tasks' right values (task -> value)."""
    live = ReviewAnswer.status == ACTIVE
    shared = select(ReviewAnswer.task_id).where(live).group_by(ReviewAnswer.task_id).having(func.count() >= 2)
    out: dict[str, dict[int, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    gold_tasks: set[int] = set()
    for task_id, annotator, choices, is_gold in session.execute(
        select(ReviewAnswer.task_id, ReviewAnswer.annotator, ReviewAnswer.choices, ReviewAnswer.is_gold).where(
            live, or_(ReviewAnswer.is_gold.is_(True), ReviewAnswer.task_id.in_(shared))
        )
    ):
        if is_gold:
            gold_tasks.add(task_id)
        for category, value in (choices or {}).items():
            out[category][task_id][annotator] = str(value)
    known: dict[str, dict[int, str]] = defaultdict(dict)
    if gold_tasks:
        for task_id, payload in session.execute(
            select(ReviewTask.id, ReviewTask.payload).where(ReviewTask.id.in_(gold_tasks))
        ):
            for category, value in ((payload or {}).get("truth") or {}).items():
                if task_id in out.get(category, {}):
                    known[category][task_id] = str(value)
    return {c: dict(v) for c, v in out.items()}, dict(known)


def accuracies(session: Session) -> dict[str, float]:
    """Smoothed reliability of every annotator with gold answers."""
    return {a: reliability(c, t) for a, (c, t) in gold_accuracy(session).items()}


def agreement(session: Session) -> dict[str, dict[str, float]]:
    """Per category: pairwise agreement over tasks answered by two or more annotators."""
    by_task: dict[int, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for task_id, annotator, choices in session.execute(
        select(ReviewAnswer.task_id, ReviewAnswer.annotator, ReviewAnswer.choices).where(
            ReviewAnswer.status == ACTIVE, ReviewAnswer.is_gold.is_(False)
        )
    ):
        for category, value in (choices or {}).items():
            by_task[task_id][category][annotator] = value
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for categories in by_task.values():
        for category, votes in categories.items():
            if len(votes) >= 2:
                agree, pairs = pairwise_agreement(votes)
                sums[category][0] += agree
                sums[category][1] += pairs
                sums[category][2] += 1
    return {c: {"agreement": a / p, "pairs": p, "items": n} for c, (a, p, n) in sorted(sums.items()) if p}


def annotator_stats(
    session: Session, now: datetime, *, window_days: float = 7.0, min_answers: int = 20, min_gold: int = 5
) -> list[dict[str, object]]:
    """Throughput and accuracy per annotator (for the dashboard).

    ``answers_per_hour`` is computed over the answers of the last ``window_days`` (their lead times) and only
    once there are ``min_answers`` of them; ``gold_accuracy`` once ``min_gold`` gold questions were answered.
    Below that the figure is ``None`` and ``rate_note`` / ``gold_note`` say why, instead of a rate from one
    answer.
    """
    gold = gold_accuracy(session)
    flagged = {a.name: a for a in session.scalars(select(ReviewAnnotator))}
    since = now - timedelta(days=window_days)
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"times": [], "leads": [], "recent": []})
    for annotator, answered_at, lead in session.execute(
        select(ReviewAnswer.annotator, ReviewAnswer.answered_at, ReviewAnswer.lead_time).where(
            ReviewAnswer.status.in_((ACTIVE, "sent_back"))
        )
    ):
        rows[annotator]["times"].append(answered_at)
        if lead is not None:
            rows[annotator]["leads"].append(float(lead))
            if _aware(answered_at) >= _aware(since):
                rows[annotator]["recent"].append(float(lead))
    out = []
    days = f"{window_days:g} day" + ("" if window_days == 1 else "s")
    for name in sorted(set(rows) | set(gold)):
        times = rows[name]["times"]
        leads = rows[name]["leads"]
        recent = rows[name]["recent"]
        correct, total = gold.get(name, (0, 0))
        hours = sum(recent) / 3600.0
        enough = len(recent) >= min_answers and hours > 0
        member = flagged.get(name)
        out.append(
            {
                "annotator": name,
                "answers": len(times),
                "gold_correct": correct,
                "gold_total": total,
                "gold_accuracy": (correct / total) if total >= min_gold else None,
                "gold_note": None if total >= min_gold else f"not enough gold answers yet ({total} of {min_gold})",
                "median_lead_time_s": median(leads) if leads else None,
                "window_answers": len(recent),
                "answers_per_hour": (len(recent) / hours) if enough else None,
                "rate_note": None
                if enough
                else f"not enough answers yet ({len(recent)} of {min_answers} in the last {days})",
                "last_answer_at": max(times).isoformat() if times else None,
                "flagged": bool(member and member.flagged),
                "flag_reason": member.flag_reason if member else None,
            }
        )
    return out
