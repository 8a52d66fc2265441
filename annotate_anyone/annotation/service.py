"""Use cases of the annotation engine, called by jobs, the CLI and the API.

* :func:`annotate_persons` — parsing, features, every labeler, calibration, routing, captions;
* :func:`record_human_label` — one human answer (free text mapped onto the allowed values);
* :func:`recalibrate` — per-category calibration of every model version on human labels;
* :func:`retrain_heads` — a new version of the learned heads from human labels;
* :func:`add_gold` — put persons in the held-out gold set.

All are idempotent: re-running produces the same rows, never duplicates.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.calibration import Calibrator, fit_calibration
from annotate_anyone.annotation.dense_captions import aa_text, dense_caption, resolved_labels
from annotate_anyone.annotation.dev_calibration import DevCalibration, dev_calibrations
from annotate_anyone.annotation.features import HANDMADE, handmade_features
from annotate_anyone.annotation.human import store_human_label
from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.labelers.demographics import DemographicsLabeler
from annotate_anyone.annotation.labelers.heads import HeadBank, HeadLabeler, cross_val_proba, train_head
from annotate_anyone.annotation.labelers.offline import OfflineLabeler
from annotate_anyone.annotation.models import (
    CalibrationRecord,
    GoldPerson,
    LabelModel,
    ModelPrediction,
    PersonFeature,
    ReviewTask,
)
from annotate_anyone.annotation.parsing.base import Parser, PersonView, decode_map, encode_map, make_parser
from annotate_anyone.annotation.routing import Candidate, Decision, Policy, consistency_flags, route
from annotate_anyone.annotation.settings import AnnotationConfig
from annotate_anyone.annotation.taxonomy import Category, Taxonomy, category_id, load_taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, Person
from annotate_anyone.errors import InvalidInput, NotFound
from annotate_anyone.perception.shot_type import shot_type
from annotate_anyone.storage.base import ObjectStore

if TYPE_CHECKING:
    from annotate_anyone.settings import ModelsConfig, Settings

REVIEW_KIND = "attributes"
OPEN_TASK = "queued"
# Which model to trust for a category when no gold evidence exists yet (higher first).
# A dedicated face model ("demographics": gender and age) outranks the generic ones on its categories.
PRIOR_RANK = {"heads": 0.3, "clip": 0.4, "vlm": 0.5, "offline": 0.6, "demographics": 0.7}


# -- engine (models loaded once per process) ------------------------------------------------------
@dataclass
class Engine:
    """The parser and labelers of one process, built from the config (heavy models load lazily)."""

    config: AnnotationConfig
    taxonomy: Taxonomy
    parser: Parser
    labelers: list[Labeler] = field(default_factory=list)
    vlm: Any = None  # VLMLabeler when configured

    @classmethod
    def build(
        cls, config: AnnotationConfig, models: ModelsConfig | None = None, vlm_adapter: tuple[str, Path] | None = None
    ) -> Engine:
        """``models``: the settings' ModelsConfig (CLIP checkpoint, cascade gate, device, dtype, batching; None:
        CPU defaults on ``config.device``); ``vlm_adapter``: (version, adapter folder) of the fine-tuned VLM
        version to label with."""
        from annotate_anyone.annotation.labelers.clip import model_labelers

        taxonomy = load_taxonomy(config.taxonomy_path)
        parser = make_parser(config.parser, checkpoint=config.parser_checkpoint)
        labelers: list[Labeler] = [OfflineLabeler(), DemographicsLabeler()]
        if vlm_adapter is None or not config.vlm_checkpoint:
            extra, vlm = model_labelers(config, models, taxonomy)  # each model loaded once per process
            return cls(config, taxonomy, parser, [*labelers, *extra], vlm)
        from annotate_anyone.annotation.finetune import finetuned_labelers

        # The base checkpoint is not loaded: the fine-tuned version takes the VLM's place (cascade included).
        extra, _ = model_labelers(config.model_copy(update={"vlm_checkpoint": None}), models, taxonomy)
        extra, vlm = finetuned_labelers(config, models, extra, vlm_adapter)
        return cls(config, taxonomy, parser, [*labelers, *extra], vlm)

    @property
    def extractor(self) -> str:
        """The feature extractor the heads train on: the VLM's embedding when configured."""
        return f"vlm:{self.vlm.model_version}" if self.vlm is not None else HANDMADE


_ENGINES: dict[str, Engine] = {}


def get_engine(
    config: AnnotationConfig, models: ModelsConfig | None = None, vlm_adapter: tuple[str, Path] | None = None
) -> Engine:
    """The process's engine for these settings and VLM version."""
    key = config.model_dump_json() + (models.model_dump_json() if models is not None else "")
    key += f"|{vlm_adapter[0]}" if vlm_adapter is not None else ""
    if key not in _ENGINES:
        _ENGINES[key] = Engine.build(config, models, vlm_adapter)
    return _ENGINES[key]


def engine_for(session: Session, store: ObjectStore, *, settings: Settings) -> Engine:
    """The engine with the VLM version the config selects (``vlm_version``; default the newest fine-tune)."""
    config = settings.annotation
    if not config.vlm_checkpoint:
        return get_engine(config, settings.models)
    from annotate_anyone.annotation.finetune import resolve_vlm_version

    adapter = resolve_vlm_version(session, store, config=config, model_cache_dir=settings.model_cache_dir)
    return get_engine(config, settings.models, adapter)


def _model_kind(version: str) -> str:
    return version.split(":", 1)[0].split("-", 1)[0]


def _now() -> datetime:
    return datetime.now(UTC)


# -- loading images, masks, parsing -----------------------------------------------------------------
def _load_rgb(store: ObjectStore, key: str) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(store.get_bytes(key))) as im:
        return np.asarray(im.convert("RGB"))


def _load_mask(store: ObjectStore, key: str | None, size: tuple[int, int]) -> np.ndarray | None:
    if not key or not store.exists(key):
        return None
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(store.get_bytes(key))) as im:
        m = im.convert("L")
        if m.size != size:
            m = m.resize(size, PILImage.BILINEAR)
        return np.asarray(m, np.float32) / 255.0


def _person_view(person: Person, store: ObjectStore, size: tuple[int, int]) -> PersonView:
    return PersonView.from_row(
        person.box, person.keypoints, person.face_boxes, _load_mask(store, person.mask_key, size), size
    )


def _parsing(
    person: Person, image: Image, rgb: np.ndarray, view: PersonView, store: ObjectStore, parser: Parser
) -> np.ndarray:
    """The person's parsing map: reused when this parser made it, else computed and stored as PNG."""
    if person.parsing_key and person.parsing_model == parser.model_version and store.exists(person.parsing_key):
        return decode_map(store.get_bytes(person.parsing_key))
    label_map = parser.parse(rgb, view)
    key = f"parsing/{image.sha256[:2]}/{image.sha256}_p{person.index}.png"
    store.put_bytes(key, encode_map(label_map), content_type="image/png")
    person.parsing_key, person.parsing_model = key, parser.model_version
    return label_map


def _upsert_feature(session: Session, person_id: int, extractor: str, vector: np.ndarray) -> None:
    row = session.scalars(
        select(PersonFeature).where(PersonFeature.person_id == person_id, PersonFeature.extractor == extractor)
    ).first()
    if row is None:
        row = PersonFeature(person_id=person_id, extractor=extractor)
        session.add(row)
    row.vector = [round(float(v), 6) for v in vector]


def _upsert_predictions(session: Session, person_id: int, preds: Sequence[Prediction], taxonomy: Taxonomy) -> None:
    existing = {
        (r.group, r.key, r.model_version): r
        for r in session.scalars(select(ModelPrediction).where(ModelPrediction.person_id == person_id))
    }
    for p in preds:
        row = existing.get((p.group, p.key, p.model_version))
        if row is None:
            row = ModelPrediction(person_id=person_id, group=p.group, key=p.key, model_version=p.model_version)
            session.add(row)
        row.value, row.confidence = p.value, p.confidence
        row.distribution = {k: round(v, 6) for k, v in p.distribution.items()}
        row.taxonomy_version = taxonomy.version


# -- evidence: gold accuracy, calibration --------------------------------------------------------------
def _human_truth(session: Session, *, gold: bool | None) -> dict[tuple[int, int, str], str]:
    """Latest human answer per (person, group, key); ``gold`` restricts to gold persons (or to the rest)."""
    q = (
        select(Attribute)
        .where(Attribute.origin == AttributeOrigin.human, Attribute.state == AttributeState.human_verified)
        .order_by(Attribute.updated_at, Attribute.id)
    )
    gold_ids = select(GoldPerson.person_id)
    if gold is True:
        q = q.where(Attribute.person_id.in_(gold_ids))
    elif gold is False:
        q = q.where(Attribute.person_id.not_in(gold_ids))
    return {(a.person_id, a.group, a.key): a.value for a in session.scalars(q) if a.value is not None}


def gold_accuracy(session: Session) -> dict[tuple[str, str], tuple[float, int]]:
    """(model_version, category) -> (accuracy, n) of every model's predictions on the gold set."""
    truth = _human_truth(session, gold=True)
    if not truth:
        return {}
    persons = {pid for pid, _, _ in truth}
    hits: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for p in session.scalars(select(ModelPrediction).where(ModelPrediction.person_id.in_(persons))):
        t = truth.get((p.person_id, p.group, p.key))
        if t is None:
            continue
        h = hits[(p.model_version, category_id(p.group, p.key))]
        h[0] += int(p.value == t)
        h[1] += 1
    return {k: (c / n, n) for k, (c, n) in hits.items()}


def recalibrate(session: Session, *, config: AnnotationConfig, model_versions: Iterable[str] | None = None) -> int:
    """Fit calibration per (model version, category) on non-gold human labels; returns rows written."""
    truth = _human_truth(session, gold=False)
    if not truth:
        return 0
    q = select(ModelPrediction).where(ModelPrediction.person_id.in_({pid for pid, _, _ in truth}))
    if model_versions is not None:
        q = q.where(ModelPrediction.model_version.in_(list(model_versions)))
    pairs: dict[tuple[str, int, str], tuple[list[dict[str, float]], list[str]]] = defaultdict(lambda: ([], []))
    for p in session.scalars(q):
        t = truth.get((p.person_id, p.group, p.key))
        if t is not None and _model_kind(p.model_version) != "heads":  # heads calibrate out-of-fold
            pairs[(p.model_version, p.group, p.key)][0].append(p.distribution)
            pairs[(p.model_version, p.group, p.key)][1].append(t)
    for (version, group, key), (dists, truths) in pairs.items():
        result = fit_calibration(dists, truths, method=config.calibration, target=config.target_accuracy)
        _store_calibration(session, version, group, key, result)
    return len(pairs)


def _store_calibration(session: Session, version: str, group: int, key: str, result: Any) -> None:
    row = session.scalars(
        select(CalibrationRecord).where(
            CalibrationRecord.model_version == version, CalibrationRecord.group == group, CalibrationRecord.key == key
        )
    ).first()
    if row is None:
        row = CalibrationRecord(model_version=version, group=group, key=key)
        session.add(row)
    row.method, row.params = result.calibrator.method, result.calibrator.params()
    row.n, row.accuracy = result.n, result.accuracy
    row.ece_before, row.ece, row.threshold = result.ece_before, result.ece_after, result.threshold


def _calibrations(session: Session) -> dict[tuple[str, str], CalibrationRecord | DevCalibration]:
    """Calibrations fitted on human answers, over the shipped dev-set ones (round 0)."""
    rows = {(r.model_version, category_id(r.group, r.key)): r for r in session.scalars(select(CalibrationRecord))}
    return {**dev_calibrations(), **rows}


# -- learned heads ---------------------------------------------------------------------------------
def latest_heads(session: Session, store: ObjectStore) -> HeadBank | None:
    row = session.scalars(select(LabelModel).where(LabelModel.kind == "heads").order_by(LabelModel.id.desc())).first()
    if row is None or not row.storage_key or not store.exists(row.storage_key):
        return None
    return HeadBank.from_bytes(store.get_bytes(row.storage_key))


def retrain_heads(
    session: Session, store: ObjectStore, *, settings: Settings, extractor: str | None = None
) -> str | None:
    """Train a new head bank on every non-gold human label with features; returns its version (None: nothing)."""
    config = settings.annotation
    extractor = extractor or engine_for(session, store, settings=settings).extractor
    truth = _human_truth(session, gold=False)
    features = {
        f.person_id: np.asarray(f.vector, np.float32)
        for f in session.scalars(select(PersonFeature).where(PersonFeature.extractor == extractor))
    }
    by_cat: dict[str, tuple[list[np.ndarray], list[str]]] = defaultdict(lambda: ([], []))
    for (pid, group, key), value in sorted(truth.items()):
        if pid in features:
            by_cat[category_id(group, key)][0].append(features[pid])
            by_cat[category_id(group, key)][1].append(value)
    trainable = {c: v for c, v in by_cat.items() if len(v[1]) >= config.min_head_labels and len(set(v[1])) >= 2}
    if not trainable:
        return None
    n_versions = session.scalar(select(func.count()).select_from(LabelModel).where(LabelModel.kind == "heads")) or 0
    version = f"heads-{n_versions + 1}"
    bank = HeadBank(version, extractor)
    metrics: dict[str, Any] = {}
    for cat, (xs, ys) in sorted(trainable.items()):
        x = np.stack(xs)
        bank.heads[cat] = train_head(cat, x, ys)
        oof = cross_val_proba(cat, x, ys)
        result = fit_calibration(oof, ys, method=config.calibration, target=config.target_accuracy)
        group, key = cat.split(".", 1)
        _store_calibration(session, version, int(group), key, result)
        metrics[cat] = {"n": len(ys), "cv_accuracy": round(result.accuracy, 4), "ece": round(result.ece_after, 4)}
    key = f"models/heads/{version}.npz"
    store.put_bytes(key, bank.to_bytes())
    session.add(LabelModel(version=version, kind="heads", storage_key=key, params={"extractor": extractor},
                           metrics=metrics))  # fmt: skip
    session.flush()
    return version


# -- routing helpers -------------------------------------------------------------------------------
def _choose(
    cat: str, preds: Sequence[Prediction], gold: dict[tuple[str, str], tuple[float, int]],
    cals: dict[tuple[str, str], CalibrationRecord | DevCalibration], min_gold: int,
) -> Prediction:  # fmt: skip
    """The prediction of the model most accurate on this category (gold, then calibration, then prior)."""

    def score(p: Prediction) -> tuple[int, float]:
        acc, n = gold.get((p.model_version, cat), (0.0, 0))
        if n >= min_gold:
            return 2, acc
        cal = cals.get((p.model_version, cat))
        if cal is not None and cal.n >= min_gold:
            return 1, cal.accuracy
        return 0, PRIOR_RANK.get(_model_kind(p.model_version), 0.1)

    return max(preds, key=score)


def _policy(cat: str, version: str, gold: dict, cals: dict, config: AnnotationConfig) -> Policy:
    acc, n = gold.get((version, cat), (0.0, 0))
    cal = cals.get((version, cat))
    threshold = cal.threshold if cal is not None else config.target_accuracy
    if n >= config.min_gold:
        passes, uncalibrated = acc >= config.gate, False
    else:  # until the gold set is big enough, the shipped dev-set accuracy stands in for it
        dev = dev_calibrations().get((version, cat))
        passes = dev is not None and dev.n >= config.min_gold and dev.accuracy >= config.gate
        uncalibrated = dev is None and cal is None
    return Policy(passes_gate=passes, threshold=threshold, gold_accuracy=acc if n else None, gold_n=n,
                  uncalibrated=uncalibrated)  # fmt: skip


def _calibrated(pred: Prediction, cal: CalibrationRecord | DevCalibration | None) -> dict[str, float]:
    if cal is None:
        return dict(pred.distribution)
    return Calibrator.from_params(cal.params).calibrate(pred.distribution)


# -- the main use case -----------------------------------------------------------------------------
@dataclass
class _PersonWork:
    person: Person
    ctx: PersonContext
    preds: list[Prediction] = field(default_factory=list)


def annotate_persons(
    session: Session,
    store: ObjectStore,
    person_ids: Iterable[int],
    *,
    settings: Settings,
    engine: Engine | None = None,
    budget: int | None = -1,
    categories: Sequence[Category] | None = None,
) -> dict[str, Any]:
    """Parse, label, calibrate and route the given persons; returns counters (idempotent).

    ``budget``: most labels sent to humans by this call (default: the config's; ``None``: no cap).
    """
    config = settings.annotation
    engine = engine or engine_for(session, store, settings=settings)
    taxonomy = engine.taxonomy
    cats = list(categories or taxonomy.categories())
    stats: dict[str, Any] = defaultdict(int)
    persons = session.scalars(
        select(Person).where(Person.id.in_(list(person_ids))).order_by(Person.image_id, Person.index)
    ).all()
    heads = latest_heads(session, store)
    labelers = [*engine.labelers, *([HeadLabeler(heads)] if heads is not None else [])]
    for labeler in labelers:  # e.g. the CLIP -> VLM cascade reads its calibration
        if hasattr(labeler, "prepare"):
            labeler.prepare(session)
    work: list[_PersonWork] = []
    by_image: dict[int, list[Person]] = defaultdict(list)
    for p in persons:
        by_image[p.image_id].append(p)
    for image_id, group in by_image.items():
        image = session.get(Image, image_id)
        if image is None:
            raise NotFound(f"image {image_id} not found")
        rgb = _load_rgb(store, image.storage_key)
        size = (rgb.shape[1], rgb.shape[0])
        for person in group:
            view = _person_view(person, store, size)
            label_map = _parsing(person, image, rgb, view, store, engine.parser)
            if person.shot_type is None:
                person.shot_type = shot_type(view.keypoints, size[0], size[1], view.face_boxes)
            ctx = PersonContext(rgb, view, label_map, engine.parser.labels_supported, person.shot_type, person.id)
            ctx.features[HANDMADE] = handmade_features(ctx)
            _upsert_feature(session, person.id, HANDMADE, ctx.features[HANDMADE])
            if engine.vlm is not None:
                ctx.features[engine.extractor] = engine.vlm.embed(ctx)
                _upsert_feature(session, person.id, engine.extractor, ctx.features[engine.extractor])
            work.append(_PersonWork(person, ctx))
    for labeler in labelers:  # every labeler sees all persons of the call at once (model batching)
        for w, preds in zip(work, labeler.label_many([w.ctx for w in work], cats), strict=True):
            w.preds.extend(preds)
    for w in work:
        _upsert_predictions(session, w.person.id, w.preds, taxonomy)
        stats["persons"] += 1
        stats["predictions"] += len(w.preds)
    session.flush()
    decisions = _route(session, work, cats, taxonomy, config, budget=config.budget if budget == -1 else budget)
    for d in decisions:
        stats[d.action] += 1
        stats[f"reason:{d.reason}"] += 1
    _write_labels(session, work, decisions, taxonomy)
    session.flush()
    _write_captions(session, [w.person for w in work], taxonomy)
    stats["models"] = sorted({p.model_version for w in work for p in w.preds})
    return dict(stats)


def _route(
    session: Session, work: list[_PersonWork], cats: Sequence[Category], taxonomy: Taxonomy,
    config: AnnotationConfig, *, budget: int | None,
) -> list[Decision]:  # fmt: skip
    gold = gold_accuracy(session)
    cals = _calibrations(session)
    gold_persons = set(session.scalars(select(GoldPerson.person_id)))
    settled = {
        (a.person_id, a.group, a.key)
        for a in session.scalars(
            select(Attribute).where(
                Attribute.person_id.in_([w.person.id for w in work]),
                Attribute.origin == AttributeOrigin.human,
                Attribute.state == AttributeState.human_verified,
            )
        )
    }
    candidates: list[Candidate] = []
    policies: dict[str, Policy] = {}
    for w in work:
        pid = w.person.id
        by_cat: dict[str, list[Prediction]] = defaultdict(list)
        for p in w.preds:
            by_cat[p.category].append(p)
        chosen = {c: _choose(c, ps, gold, cals, config.min_gold) for c, ps in by_cat.items()}
        fracs = _fractions(w.ctx.parsing)
        flags = consistency_flags(chosen, by_cat, fracs, w.ctx.parsing_labels, taxonomy)
        for cat in cats:
            if (pid, cat.group, cat.key) in settled:
                continue
            pred = chosen.get(cat.id)
            if pred is None:
                candidates.append(Candidate(pid, cat.group, cat.key, None, 0.0, gold=pid in gold_persons))
                policies.setdefault(cat.id, Policy(False, 1.0))
                continue
            dist = _calibrated(pred, cals.get((pred.model_version, cat.id)))
            value = max(dist, key=dist.__getitem__)
            candidates.append(Candidate(pid, cat.group, cat.key, value, dist[value], dist, pred.model_version,
                                        flags.get(cat.id, []), pid in gold_persons))  # fmt: skip
            policies[f"{cat.id}@{pred.model_version}"] = _policy(cat.id, pred.model_version, gold, cals, config)
    # Policies are per (category, chosen model): route each model's candidates with its own policies.
    decisions: list[Decision] = []
    for model_version in sorted({c.model_version for c in candidates}):
        group = [c for c in candidates if c.model_version == model_version]
        pols = {c.category: policies.get(f"{c.category}@{model_version}") or Policy(False, 1.0) for c in group}
        decisions.extend(route(group, pols, budget=None))
    return _apply_budget(decisions, budget)


def _apply_budget(decisions: list[Decision], budget: int | None) -> list[Decision]:
    wanting = sorted((d for d in decisions if d.action != "auto"), key=lambda d: -d.priority)
    for i, d in enumerate(wanting):
        d.action = "review" if budget is None or i < budget else "deferred"
    return decisions


def _fractions(label_map: np.ndarray | None) -> dict[int, float]:
    if label_map is None:
        return {}
    counts = np.bincount(label_map.ravel(), minlength=18).astype(float)
    fg = max(counts[1:].sum(), 1.0)
    return {i: counts[i] / fg for i in range(1, len(counts))}


def _write_labels(session: Session, work: list[_PersonWork], decisions: list[Decision], taxonomy: Taxonomy) -> None:
    """One live model Attribute per (person, category); routed ones get a queued ReviewTask per person."""
    pids = [w.person.id for w in work]
    rows = {
        (a.person_id, a.group, a.key): a
        for a in session.scalars(
            select(Attribute).where(Attribute.person_id.in_(pids), Attribute.origin == AttributeOrigin.model)
        )
    }
    routed: dict[int, list[tuple[Decision, Attribute]]] = defaultdict(list)
    for d in decisions:
        c = d.candidate
        row = rows.get((c.person_id, c.group, c.key))
        if row is not None and row.state in (AttributeState.human_verified, AttributeState.rejected):
            continue  # settled by a human
        if row is None:
            row = Attribute(person_id=c.person_id, group=c.group, key=c.key, origin=AttributeOrigin.model, annotator="")
            session.add(row)
            rows[(c.person_id, c.group, c.key)] = row
        row.value, row.confidence = c.value, round(c.confidence, 6)
        row.distribution = {k: round(v, 6) for k, v in c.distribution.items()} or None
        row.model_version, row.taxonomy_version = c.model_version or "none", taxonomy.version
        row.state = AttributeState.auto_accepted if d.action == "auto" else AttributeState.needs_review
        if d.action == "review":
            routed[c.person_id].append((d, row))
    session.flush()
    for pid, items in routed.items():
        _queue_task(session, pid, items, taxonomy)


def _queue_task(session: Session, person_id: int, items: list[tuple[Decision, Attribute]], taxonomy: Taxonomy) -> None:
    entries = [
        {
            "attribute_id": row.id,
            "group": row.group,
            "key": row.key,
            "question": taxonomy.attribute(row.group, row.key).question,
            "options": list(taxonomy.options(row.group, row.key)),
            "value": row.value,
            "confidence": row.confidence,
            "distribution": row.distribution or {},
            "model_version": row.model_version,
            "reason": d.reason,
            "flags": d.candidate.flags,
        }
        for d, row in sorted(items, key=lambda x: (x[1].group, x[1].key))
    ]
    priority = max(d.priority for d, _ in items)
    gold = any(d.candidate.gold for d, _ in items)
    open_tasks = session.scalars(
        select(ReviewTask).where(ReviewTask.person_id == person_id, ReviewTask.kind == REVIEW_KIND)
    ).all()
    pending = {
        e["attribute_id"] for t in open_tasks if t.status != OPEN_TASK for e in (t.payload or {}).get("attributes", [])
    }
    entries = [e for e in entries if e["attribute_id"] not in pending]  # already with humans
    queued = next((t for t in open_tasks if t.status == OPEN_TASK), None)
    if not entries:
        if queued is not None:
            session.delete(queued)
        return
    payload = {"taxonomy_version": taxonomy.version, "purpose": "gold_set" if gold else "review", "attributes": entries}
    if queued is None:
        session.add(
            ReviewTask(person_id=person_id, kind=REVIEW_KIND, status=OPEN_TASK, priority=priority, payload=payload)
        )
    else:
        queued.payload, queued.priority = payload, priority


def _write_captions(session: Session, persons: Sequence[Person], taxonomy: Taxonomy) -> None:
    labels = resolved_labels(session, [p.id for p in persons])
    for p in persons:
        p.caption = dense_caption(p.shot_type, aa_text(labels.get(p.id, {}), taxonomy)) or None


def refresh_captions(session: Session, person_ids: Iterable[int], *, config: AnnotationConfig) -> None:
    """Rewrite the dense captions of these persons from their current labels."""
    taxonomy = load_taxonomy(config.taxonomy_path)
    _write_captions(session, session.scalars(select(Person).where(Person.id.in_(list(person_ids)))).all(), taxonomy)


# -- human answers and the gold set -------------------------------------------------------------------
def record_human_label(
    session: Session,
    person_id: int,
    group: int,
    key: str,
    value: str,
    annotator: str,
    *,
    config: AnnotationConfig,
    mapper: Any = None,
    answered_at: datetime | None = None,
) -> Attribute:
    """Store one human answer given as free text (idempotent per person, category, annotator).

    A value outside the allowed options is mapped onto them with the offline text-embedding model;
    :class:`InvalidInput` if nothing is close. Storing and settling the model's label (``human_verified``
    when it agrees, ``rejected`` when not) is :func:`annotate_anyone.annotation.human.store_human_label`,
    the one the Label Studio sync uses.
    """
    taxonomy = load_taxonomy(config.taxonomy_path)
    options = taxonomy.options(group, key)
    if value not in options:
        from annotate_anyone.annotation.textmap import ValueMapper

        mapped = (mapper or ValueMapper()).map(value, options, context=taxonomy.attribute(group, key).question)
        if mapped.value is None:
            raise InvalidInput(f"{value!r} is not an allowed value of {category_id(group, key)}: {list(options)}")
        value = mapped.value
    if session.get(Person, person_id) is None:
        raise NotFound(f"person {person_id} not found")
    row = store_human_label(
        session,
        person_id=person_id,
        group=group,
        key=key,
        value=value,
        annotator=annotator,
        answered_at=answered_at or _now(),
        taxonomy_version=taxonomy.version,
    )
    row.taxonomy_version, row.updated_at = taxonomy.version, answered_at or _now()
    session.flush()
    return row


def add_gold(session: Session, person_ids: Iterable[int]) -> int:
    """Put persons in the held-out gold set (idempotent); returns how many were added."""
    have = set(session.scalars(select(GoldPerson.person_id)))
    new = [pid for pid in dict.fromkeys(person_ids) if pid not in have]
    session.add_all(GoldPerson(person_id=pid) for pid in new)
    session.flush()
    return len(new)
