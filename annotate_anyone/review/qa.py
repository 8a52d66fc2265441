"""Quality control: gold accuracy, agreement on overlapped tasks, aggregation, flagging.

Aggregation is majority vote or Dawid-Skene. :func:`weighted_vote` is the one-coin Dawid-Skene decision
for one item given each annotator's reliability (log-odds weights); :func:`dawid_skene` is the full EM
over many items with one confusion matrix per annotator.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session

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


def dawid_skene(
    items: Mapping[Hashable, Mapping[str, str]], labels: list[str], iterations: int = 50, tol: float = 1e-6
) -> tuple[dict[Hashable, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Full Dawid-Skene EM. ``items``: item -> {annotator: label}. Returns posteriors and confusion matrices."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    annotators = sorted({a for votes in items.values() for a in votes})
    post = {}
    for item, votes in items.items():  # initialise with vote shares
        row = [0.0] * k
        for label in votes.values():
            row[index[label]] += 1
        total = sum(row)
        post[item] = [v / total for v in row]
    confusion: dict[str, list[list[float]]] = {}
    for _ in range(iterations):
        prior = [sum(p[j] for p in post.values()) + 1e-2 for j in range(k)]
        norm = sum(prior)
        prior = [p / norm for p in prior]
        for a in annotators:  # M-step: confusion[a][true][given], Laplace-smoothed
            counts = [[0.01] * k for _ in range(k)]
            for item, votes in items.items():
                if a in votes:
                    for j in range(k):
                        counts[j][index[votes[a]]] += post[item][j]
            confusion[a] = [[c / sum(row) for c in row] for row in counts]
        change = 0.0
        for item, votes in items.items():  # E-step
            logp = [math.log(prior[j]) for j in range(k)]
            for a, label in votes.items():
                for j in range(k):
                    logp[j] += math.log(confusion[a][j][index[label]])
            top = max(logp)
            exp = [math.exp(v - top) for v in logp]
            norm = sum(exp)
            new = [e / norm for e in exp]
            change = max(change, max(abs(x - y) for x, y in zip(new, post[item], strict=True)))
            post[item] = new
        if change < tol:
            break
    posteriors = {item: {labels[j]: p[j] for j in range(k)} for item, p in post.items()}
    matrices = {a: {labels[t]: {labels[g]: m[t][g] for g in range(k)} for t in range(k)} for a, m in confusion.items()}
    return posteriors, matrices


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
