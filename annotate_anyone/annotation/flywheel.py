"""Flywheel rounds and their report.

A round: recalibrate every model on the human answers so far, fine-tune the VLM on them when one is
configured (LoRA, a new VLM version: annotation/finetune.py), retrain the learned heads (a new
version), re-label the pool with the newest versions, route, and snapshot the report. The report says
how many labels were auto-accepted and routed, how many human answers arrived, each category's accuracy on the gold set
(and its change since the last round), the expected error of the auto-accepted labels, and the
human hours: spent on answers, saved by the labels actually auto-accepted (a routed label nobody has
answered yet saves nothing: it is ``still_open``), and the estimate for labelling everything by hand.
"""

from __future__ import annotations

import builtins
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.finetune import LORA_KIND, FinetuneOptions, finetune_vlm
from annotate_anyone.annotation.models import FlywheelRound, GoldPerson, LabelModel, ReviewTask
from annotate_anyone.annotation.service import (
    annotate_persons,
    gold_accuracy,
    recalibrate,
    retrain_heads,
)
from annotate_anyone.annotation.settings import AnnotationConfig
from annotate_anyone.annotation.taxonomy import Category, category_id
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Person
from annotate_anyone.errors import NotFound
from annotate_anyone.storage.base import ObjectStore

if TYPE_CHECKING:
    from annotate_anyone.settings import Settings


def _now() -> datetime:
    return datetime.now(UTC)


def run_round(
    session: Session,
    store: ObjectStore,
    *,
    settings: Settings,
    person_ids: Iterable[int] | None = None,
    budget: int | None = -1,
    categories: Sequence[Category] | None = None,
    finetune: FinetuneOptions | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Run one flywheel round over ``person_ids`` (default: every person) and return its report.

    The annotate job's steps in one session: :func:`open_round`, :func:`annotate_unit` for each unit
    (``batch_size`` persons; default: one unit, so ``budget`` caps the whole round), :func:`finish_round`.
    With a VLM configured (and ``vlm_finetune`` on), the round first fine-tunes it on every non-gold
    human answer (``finetune``: the LoRA options); the new version labels the pool, so its accuracy on
    the gold set (the gate) is measured in this round's report."""
    rnd = open_round(session, store, settings=settings, finetune=finetune)
    ids = list(person_ids) if person_ids is not None else list(session.scalars(select(Person.id)))
    results = [
        annotate_unit(session, store, unit, settings=settings, budget=budget, categories=categories)
        for unit in round_units(ids, batch_size)
    ]
    return finish_round(session, rnd.number, merge_unit_stats(results), settings=settings)


def open_round(
    session: Session, store: ObjectStore, *, settings: Settings, finetune: FinetuneOptions | None = None
) -> FlywheelRound:
    """A round's plan step: open round N+1 and learn from the human answers so far (recalibrate every
    model, fine-tune the VLM when one is configured, retrain the heads)."""
    last = session.scalar(select(func.max(FlywheelRound.number))) or 0
    rnd = FlywheelRound(number=last + 1, started_at=_now())
    session.add(rnd)
    session.flush()
    recalibrate(session, config=settings.annotation)
    tuned = finetune_for_round(session, store, settings=settings, options=finetune)
    rnd.models = {"heads": retrain_heads(session, store, settings=settings), "vlm_finetune": tuned}
    return rnd


def round_units(person_ids: Sequence[int], size: int | None) -> list[list[int]]:
    """A round's units: ``size`` persons each, or all of them as one unit when ``size`` is ``None``."""
    ids = list(person_ids)
    if size is None:
        return [ids]
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def annotate_unit(
    session: Session,
    store: ObjectStore,
    person_ids: Sequence[int],
    *,
    settings: Settings,
    budget: int | None = -1,
    categories: Sequence[Category] | None = None,
) -> dict[str, Any]:
    """A round's unit step: label and route these persons with the newest models; returns the counters."""
    return dict(annotate_persons(session, store, person_ids, settings=settings, budget=budget, categories=categories))


def merge_unit_stats(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The units' counters added up (lists, e.g. the model versions, as their sorted union)."""
    totals: dict[str, Any] = {}
    for result in results:
        for k, v in result.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                totals[k] = totals.get(k, 0) + v
            elif isinstance(v, list):
                totals[k] = sorted(set(totals.get(k, [])) | {str(x) for x in v})
    return totals


def finish_round(session: Session, number: int, totals: dict[str, Any], *, settings: Settings) -> dict[str, Any]:
    """A round's finish step: record the labelers used and the end time, snapshot and return the report
    (``totals``: the units' counters, :func:`merge_unit_stats`)."""
    rnd = session.scalar(select(FlywheelRound).where(FlywheelRound.number == number))
    if rnd is not None:
        rnd.models = {**(rnd.models or {}), "labelers": totals.get("models", [])}
        rnd.finished_at = _now()
    report = json.loads(
        json.dumps(flywheel_report(session, number, config=settings.annotation, annotate_stats=totals), default=str)
    )
    if rnd is not None:
        rnd.stats = report
    session.flush()
    return report


def finetune_for_round(
    session: Session, store: ObjectStore, *, settings: Settings, options: FinetuneOptions | None = None
) -> dict[str, Any] | None:
    """A round's learning step for the VLM: fine-tune it on the human answers so far when one is configured
    and ``vlm_finetune`` is on (a new version only when the answers changed); ``None`` otherwise."""
    config = settings.annotation
    if not (config.vlm_checkpoint and config.vlm_finetune):
        return None
    return finetune_vlm(session, store, settings=settings, options=options)


def category_accuracy(session: Session, *, min_gold: int = 1) -> dict[str, dict[str, Any]]:
    """Per category, the best model's accuracy on the gold set: {category: {accuracy, n, model_version}}."""
    best: dict[str, dict[str, Any]] = {}
    for (version, cat), (acc, n) in gold_accuracy(session).items():
        if n < min_gold:
            continue
        if cat not in best or (acc, n) > (best[cat]["accuracy"], best[cat]["n"]):
            best[cat] = {"accuracy": round(acc, 4), "n": n, "model_version": version}
    return dict(sorted(best.items()))


def accuracy_by_version(session: Session, *, gate: float, min_gold: int = 1) -> dict[str, dict[str, dict[str, Any]]]:
    """Every model version's accuracy on the gold set, per category: {version: {category: {accuracy, n,
    passes_gate}}} (the gate re-measured for each version, fine-tuned VLM versions included)."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (version, cat), (acc, n) in sorted(gold_accuracy(session).items()):
        out[version][cat] = {"accuracy": builtins.round(acc, 4), "n": n, "passes_gate": n >= min_gold and acc >= gate}
    return dict(out)


def vlm_versions(session: Session) -> list[dict[str, Any]]:
    """The fine-tuned VLM versions (oldest first): base, parent, training answers and loss."""
    rows = session.scalars(select(LabelModel).where(LabelModel.kind == LORA_KIND).order_by(LabelModel.id))
    return [
        {
            "version": r.version,
            "base_version": (r.params or {}).get("base_version"),
            "parent": (r.params or {}).get("parent"),
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "n_examples": (r.metrics or {}).get("n_examples"),
            "loss_first": (r.metrics or {}).get("loss_first"),
            "loss_last": (r.metrics or {}).get("loss_last"),
        }
        for r in rows
    ]


def flywheel_report(
    session: Session,
    round: int | None = None,
    *,
    config: AnnotationConfig,
    annotate_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of round ``round`` (default: the latest); a finished round's snapshot is returned as stored.
    ``config``: the settings' annotation section (gate, minimum gold, taxonomy, seconds per label)."""
    q = select(FlywheelRound).order_by(FlywheelRound.number.desc())
    rnd = session.scalars(q.where(FlywheelRound.number == round) if round is not None else q).first()
    if rnd is None and round is not None:
        raise NotFound(f"flywheel round {round} not found")
    if rnd is not None and rnd.stats and annotate_stats is None:
        return dict(rnd.stats)
    since = rnd.started_at if rnd is not None else None
    prev = None
    if rnd is not None:
        prev = session.scalars(
            select(FlywheelRound).where(FlywheelRound.number < rnd.number).order_by(FlywheelRound.number.desc())
        ).first()
    states = Counter(
        dict(
            session.execute(
                select(Attribute.state, func.count())
                .where(Attribute.origin == AttributeOrigin.model)
                .group_by(Attribute.state)
            ).all()
        )
    )
    answers_q = select(func.count()).select_from(Attribute).where(Attribute.origin == AttributeOrigin.human)
    answers_total = session.scalar(answers_q) or 0
    answers_round = session.scalar(answers_q.where(Attribute.updated_at >= since)) if since else answers_total
    auto_conf = session.scalar(
        select(func.avg(Attribute.confidence)).where(
            Attribute.origin == AttributeOrigin.model, Attribute.state == AttributeState.auto_accepted
        )
    )
    queued_tasks = session.scalar(
        select(func.count())
        .select_from(ReviewTask)
        .where(ReviewTask.kind == "attributes", ReviewTask.status == "queued")
    )
    accuracy = category_accuracy(session)
    before = (prev.stats or {}).get("per_category", {}) if prev is not None else {}
    for cat, entry in accuracy.items():
        old = before.get(cat, {}).get("accuracy")
        entry["change"] = None if old is None else builtins.round(entry["accuracy"] - old, 4)
    n_persons = session.scalar(select(func.count()).select_from(Person)) or 0
    n_categories = len(_categories(config))
    manual_labels = n_persons * n_categories
    human_labels = answers_total
    hours_manual = manual_labels * config.seconds_per_label / 3600
    hours_spent = human_labels * config.seconds_per_label / 3600
    per_label_h = config.seconds_per_label / 3600
    routing = annotate_stats or {}
    passing = sorted(c for c, e in accuracy.items() if e["n"] >= config.min_gold and e["accuracy"] >= config.gate)
    return {
        "round": rnd.number if rnd is not None else None,
        "started_at": rnd.started_at.isoformat() if rnd is not None else None,
        "finished_at": rnd.finished_at.isoformat() if rnd is not None and rnd.finished_at else None,
        "models": dict(rnd.models) if rnd is not None else {},
        "labels": {
            "auto_accepted": states.get(AttributeState.auto_accepted, 0),
            "needs_review": states.get(AttributeState.needs_review, 0),
            "human_verified": states.get(AttributeState.human_verified, 0),
            "rejected": states.get(AttributeState.rejected, 0),
        },
        "this_round": {
            "persons": routing.get("persons", 0),
            "auto_accepted": routing.get("auto", 0),
            "routed": routing.get("review", 0),
            "deferred": routing.get("deferred", 0),
            "reasons": {k.split(":", 1)[1]: v for k, v in routing.items() if k.startswith("reason:")},
        },
        "review_tasks_queued": queued_tasks or 0,
        "human_answers": {"this_round": answers_round or 0, "total": answers_total},
        "gold": {"persons": session.scalar(select(func.count()).select_from(GoldPerson)) or 0, "gate": config.gate},
        "per_category": accuracy,
        "per_model_version": accuracy_by_version(session, gate=config.gate, min_gold=config.min_gold),
        "vlm_versions": vlm_versions(session),
        "categories_passing_gate": passing,
        "expected_error_auto_accepted": None if auto_conf is None else builtins.round(1.0 - float(auto_conf), 4),
        "human_hours": {  # saved: only for labels the model's answer settled (auto-accepted), never for open ones
            "manual_estimate": builtins.round(hours_manual, 3),
            "spent": builtins.round(hours_spent, 3),
            "saved": builtins.round(states.get(AttributeState.auto_accepted, 0) * per_label_h, 3),
            "still_open": builtins.round(states.get(AttributeState.needs_review, 0) * per_label_h, 3),
            "human_share": builtins.round(human_labels / manual_labels, 4) if manual_labels else None,
            "seconds_per_label": config.seconds_per_label,
        },
    }


def _categories(config: AnnotationConfig) -> list[str]:
    from annotate_anyone.annotation.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(config.taxonomy_path)
    return [category_id(c.group, c.key) for c in taxonomy.categories()]


def release_summary(session: Session, *, config: AnnotationConfig) -> dict[str, Any]:
    """What a release manifest publishes about the labels: expected error and the routing figures."""
    report = flywheel_report(session, config=config)
    by_cat: dict[str, float] = defaultdict(float)
    rows = session.execute(
        select(Attribute.group, Attribute.key, func.avg(Attribute.confidence))
        .where(Attribute.origin == AttributeOrigin.model, Attribute.state == AttributeState.auto_accepted)
        .group_by(Attribute.group, Attribute.key)
    ).all()
    for group, key, conf in rows:
        by_cat[category_id(group, key)] = round(1.0 - float(conf or 0.0), 4)
    return {
        "expected_error_rate": report["expected_error_auto_accepted"],
        "routing": {
            "round": report["round"],
            "labels": report["labels"],
            "gate": report["gold"]["gate"],
            "categories_passing_gate": report["categories_passing_gate"],
            "expected_error_by_category": dict(sorted(by_cat.items())),
        },
    }
