"""Routing: which labels are auto-accepted and which go to humans (pure logic, no database).

Order of the rules for each (person, category) label:

1. persons in the gold set go to humans whole (their answers measure the models);
2. no model answered -> humans (``needs_model_or_person``: no packaged labeler covers it);
3. the category's gold-set accuracy is below the gate (paper: 85%) -> humans, wholesale; before the
   gold set is big enough, the shipped dev-set accuracy stands in for it, and an answer with no such
   calibration goes to humans as ``uncalibrated``;
4. the label contradicts another model (parsing shows a hat, the labeler says none) -> humans;
5. its calibrated confidence is below the category's threshold for the target accuracy -> humans;
6. otherwise auto-accepted.

A per-round human budget caps what is sent, most uncertain first; the rest is deferred (stays
``needs_review`` without a task, and competes again next round).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from annotate_anyone.annotation.labelers.base import Prediction
from annotate_anyone.annotation.taxonomy import ATR, Taxonomy, category_id

Action = Literal["auto", "review", "deferred"]

# group -> ATR label whose presence in the parsing map must agree with the group's presence answer
PRESENCE_CHECKS: dict[int, str] = {5: "dress", 10: "hat", 11: "bag", 12: "belt", 13: "scarf"}
NEEDS_PERSON_REASON = "needs_model_or_person"
SKIRT_VALUES = {"skirt"}
PANTS_VALUES = {"pants", "jeans", "shorts", "leggings"}


@dataclass(slots=True)
class Candidate:
    """The chosen model label for one (person, category), with its calibrated confidence."""

    person_id: int
    group: int
    key: str
    value: str | None
    confidence: float
    distribution: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    flags: list[str] = field(default_factory=list)
    gold: bool = False

    @property
    def category(self) -> str:
        return category_id(self.group, self.key)


@dataclass(slots=True)
class Policy:
    """A category's routing policy for this round."""

    passes_gate: bool
    threshold: float
    gold_accuracy: float | None = None
    gold_n: int = 0
    uncalibrated: bool = False  # no calibration of the answering model and no gold evidence yet


@dataclass(slots=True)
class Decision:
    candidate: Candidate
    action: Action
    reason: str
    priority: float  # higher = more urgent for humans


def _wants_human(c: Candidate, policy: Policy | None) -> tuple[str, float] | None:
    uncertainty = 1.0 - c.confidence
    if c.gold:
        return "gold", 2.0 + uncertainty
    if c.value is None:
        return NEEDS_PERSON_REASON, 1.0
    if policy is not None and policy.uncalibrated and not policy.passes_gate:
        return "uncalibrated", uncertainty
    if policy is None or not policy.passes_gate:
        return "gate", uncertainty
    if c.flags:
        return "inconsistent", 1.0 + uncertainty
    if c.confidence < policy.threshold:
        return "low_confidence", uncertainty
    return None


def route(
    candidates: Iterable[Candidate], policies: Mapping[str, Policy], *, budget: int | None = None
) -> list[Decision]:
    """Decide every candidate; at most ``budget`` labels go to humans (``None``: no cap)."""
    decisions: list[Decision] = []
    wanting: list[Decision] = []
    for c in candidates:
        verdict = _wants_human(c, policies.get(c.category))
        if verdict is None:
            decisions.append(Decision(c, "auto", "confident", 0.0))
        else:
            wanting.append(Decision(c, "review", verdict[0], verdict[1]))
    wanting.sort(key=lambda d: (-d.priority, d.candidate.person_id, d.candidate.category))
    for i, d in enumerate(wanting):
        if budget is not None and i >= budget:
            d.action = "deferred"
        decisions.append(d)
    return decisions


def consistency_flags(
    chosen: Mapping[str, Prediction],
    others: Mapping[str, Sequence[Prediction]],
    parsing_fraction: Mapping[int, float],
    parser_labels: frozenset[int],
    taxonomy: Taxonomy,
    *,
    min_fraction: float = 0.004,
    confident: float = 0.8,
) -> dict[str, list[str]]:
    """Cross-model consistency problems per category id of the chosen labels.

    * parsing vs labeler on item presence (hat, bag, belt, scarf, dress; skirt vs trousers), only
      for items the parser can draw at all;
    * two models that are both confident and disagree.
    """
    flags: dict[str, list[str]] = {}
    for group, label in PRESENCE_CHECKS.items():
        if ATR[label] not in parser_labels:
            continue
        key = taxonomy.group(group).presence_key
        pred = chosen.get(category_id(group, key)) if key else None
        if pred is None:
            continue
        parsed = parsing_fraction.get(ATR[label], 0.0) >= min_fraction
        absent = taxonomy.is_absent(group, pred.key, pred.value)
        if parsed and absent:
            flags.setdefault(pred.category, []).append(f"parsing shows a {label}, labeler says none")
        elif not parsed and not absent:
            flags.setdefault(pred.category, []).append(f"labeler says {pred.value}, parsing shows no {label}")
    bottoms = chosen.get("8.type")
    if bottoms is not None and {ATR["skirt"], ATR["pants"]} <= parser_labels:
        skirt = parsing_fraction.get(ATR["skirt"], 0.0) >= min_fraction
        pants = parsing_fraction.get(ATR["pants"], 0.0) >= min_fraction
        if skirt and not pants and bottoms.value in PANTS_VALUES:
            flags.setdefault("8.type", []).append("parsing shows a skirt, labeler says trousers")
        if pants and not skirt and bottoms.value in SKIRT_VALUES:
            flags.setdefault("8.type", []).append("parsing shows trousers, labeler says skirt")
    for cat, pred in chosen.items():
        if pred.confidence < confident:
            continue
        for other in others.get(cat, ()):
            if (
                other.model_version != pred.model_version
                and other.confidence >= confident
                and other.value != pred.value
            ):
                flags.setdefault(cat, []).append(f"{other.model_version} says {other.value}")
    return flags
