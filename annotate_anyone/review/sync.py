"""Sync back: the webhook inbox and the periodic reconciliation, both feeding one idempotent applier.

* Webhook: the receiver stores the event (:func:`receive_event`) and returns; :func:`process_events`
  applies stored events later (a background task, or the next reconciliation).
* Reconciliation (:func:`reconcile`): pulls tasks changed since the project's cursor (minus a safety
  overlap) and applies every annotation; annotations gone from a task are withdrawn. ``full=True`` also
  lists every backend task and re-queues tasks deleted there (or reports them if already answered).

The same annotation applied twice changes nothing: answers are keyed by the backend annotation id and
carry its revision (``updated_at``); human labels are keyed by (person, category, annotator).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation import human
from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import Taxonomy, split_category
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, ImageStatus, Person
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.review import configs, engine, qa, question_layout
from annotate_anyone.review.builders import box_from_region, parsing_from_result
from annotate_anyone.review.client import (
    REF_FIELD,
    BackendUnavailable,
    PulledAnnotation,
    PulledTask,
    ReviewBackend,
    format_cursor,
    parse_time,
)
from annotate_anyone.review.models import ReviewAnnotator, ReviewAnswer, ReviewEvent, ReviewProject
from annotate_anyone.review.push import (
    ANSWERED,
    GOLD_TEMPLATE,
    PUSHED,
    PUSHING,
    QUEUED,
    WITHDRAWN,
    gone_persons,
    review_meta,
    set_review_meta,
)
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.storage import ObjectStore

log = logging.getLogger(__name__)
ACTIVE, DELETED, CANCELLED, SENT_BACK = "active", "deleted", "cancelled", "sent_back"
FOLLOW_UP = "followup"  # the payload purpose of a task holding another task's unanswered questions


@dataclass
class SyncReport:
    """Counts of one reconciliation or event run."""

    tasks_seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    orphans: int = 0
    tasks_withdrawn: int = 0
    requeued_deleted: int = 0
    deleted_answered: list[int] = field(default_factory=list)
    events: int = 0
    event_errors: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class Applier:
    """Turns backend annotations into answers and human labels; every method is idempotent."""

    def __init__(self, taxonomy: Taxonomy, store: ObjectStore, options: ReviewConfig) -> None:
        self.taxonomy = taxonomy
        self.store = store
        self.options = options
        self.controls = {configs.control_name(c.group, c.key): c for c in taxonomy.categories()}
        self._categories = {c.id for c in taxonomy.categories()}
        self._accuracy: dict[str, float] | None = None
        self._confusions: qa.Confusions | None = None  # Dawid-Skene, fitted once per refresh
        self._known: set[str] = set()  # annotators known to have a row

    def refresh_reliability(self, session: Session) -> None:
        """Annotators' gold accuracy and, for ``dawid_skene``, their confusion matrices (refit here)."""
        self._accuracy = qa.accuracies(session)
        self._confusions = self._fit_confusions(session, self._accuracy)

    def _fit_confusions(self, session: Session, accuracy: Mapping[str, float]) -> qa.Confusions:
        if self.options.aggregation != "dawid_skene":
            return qa.Confusions()
        answers, known = qa.settling_evidence(session)
        options = {c: self.taxonomy.options(*split_category(c)) for c in answers if c in self._categories}
        return qa.fit_confusions({c: v for c, v in answers.items() if c in options}, options, accuracy, known=known)

    # ------------------------------------------------------------------ parse

    def parse(self, task: ReviewTask, result: list[dict[str, Any]]) -> tuple[dict, dict]:
        """(choices by category id, extra) from one annotation's result.

        An attribute task's answers are read through the layout it was shown with: answers to questions
        that were hidden are dropped, and the parts checklist settles the presence (and, for a part left
        out, every routed question) of each part it listed.
        """
        choices: dict[str, str] = {}
        extra: dict[str, Any] = {}
        ticked: list[str] | None = None
        for region in result:
            name, value = region.get("from_name"), region.get("value") or {}
            if region.get("type") == "choices" and name == question_layout.PARTS:
                ticked = [str(v) for v in value.get("choices") or []]
            elif region.get("type") == "choices" and name in self.controls and value.get("choices"):
                category = self.controls[name]
                choices[category.id] = configs.stored_value(value["choices"][0], self.taxonomy)
            elif name == configs.BOX_CHECK and value.get("choices"):
                extra["check"] = value["choices"][0]
            elif region.get("type") == "rectanglelabels" and name == configs.PERSON:
                extra["box_region"] = value
        if task.kind == "parsing":
            extra["parsing_result"] = [r for r in result if r.get("type") == "brushlabels"]
        shown = task_layout(task)
        if task.kind == "attributes" and shown is not None:
            choices = question_layout.settle(shown, self.taxonomy, ticked, choices)
            if ticked is not None:
                extra["parts"] = ticked
        return choices, extra

    # ------------------------------------------------------------------ apply

    def apply(self, session: Session, project: ReviewProject, task: ReviewTask, ann: PulledAnnotation, via: str) -> str:
        """Store one annotation; returns ``new``, ``updated`` or ``unchanged``."""
        answer = session.scalars(
            select(ReviewAnswer).where(
                ReviewAnswer.project_id == project.id, ReviewAnswer.external_id == ann.external_id
            )
        ).first()
        status = CANCELLED if ann.was_cancelled else ACTIVE
        if answer is not None and answer.revision == ann.revision and answer.status in (status, SENT_BACK):
            return "unchanged"
        choices, extra = self.parse(task, ann.result)
        outcome = "updated" if answer is not None else "new"
        if answer is None:
            answer = ReviewAnswer(project_id=project.id, task_id=task.id, external_id=ann.external_id, via=via)
            session.add(answer)
        answer.annotator = ann.annotator
        answer.choices = choices
        answer.extra = self._extra(session, task, extra)
        answer.lead_time = ann.lead_time
        answer.answered_at = ann.created_at
        answer.revision = ann.revision
        answer.status = status if answer.status != SENT_BACK else SENT_BACK
        answer.is_gold = task.is_gold
        truth = engine.gold_truth(task)
        asked = [c for c in truth if c in choices] if status == ACTIVE else []
        answer.gold_total = len(asked)
        answer.gold_correct = sum(1 for c in asked if choices[c] == truth[c])
        if ann.annotator not in self._known:
            _ensure_annotator(session, ann.annotator)
            self._known.add(ann.annotator)
        session.flush()
        self.settle(session, task)
        return outcome

    def withdraw(self, session: Session, answer: ReviewAnswer) -> bool:
        """The annotation was deleted in the backend: keep the event, drop what it derived."""
        if answer.status == DELETED:
            return False
        answer.status = DELETED
        session.flush()
        task = session.get(ReviewTask, answer.task_id)
        if task is not None:
            self.settle(session, task)
        return True

    def _extra(self, session: Session, task: ReviewTask, extra: dict[str, Any]) -> dict[str, Any]:
        if task.kind == "parsing" and extra.get("parsing_result") and task.person_id is not None:
            from annotate_anyone.annotation.parsing import encode_map

            size = task_person(session, task)
            label_map = parsing_from_result(extra.pop("parsing_result"), self.taxonomy, *size)
            _, key = self.store.put_content(encode_map(label_map), prefix="parsing/human", ext="png")
            extra["parsing_key"] = key
        extra.pop("parsing_result", None)
        return extra

    # ------------------------------------------------------------------ settle

    def settle(self, session: Session, task: ReviewTask) -> None:
        """Recompute what a task's active answers mean: human labels, consensus, model label states."""
        answers = list(
            session.scalars(
                select(ReviewAnswer)
                .where(ReviewAnswer.task_id == task.id, ReviewAnswer.status == ACTIVE)
                .order_by(ReviewAnswer.answered_at, ReviewAnswer.id)
            )
        )
        needed = int(review_meta(task).get("overlap") or 1)
        if task.status in (PUSHED, ANSWERED):
            task.status = ANSWERED if len(answers) >= needed else PUSHED
        if task.is_gold or task.person_id is None:
            return
        if task.kind == "attributes":
            self._settle_attributes(session, task, answers)
            if task.status == ANSWERED and "followup" not in review_meta(task):
                self._follow_up(session, task, answers)
        elif answers:
            self._settle_person(session, task, answers[-1])

    def _follow_up(self, session: Session, task: ReviewTask, answers: list[ReviewAnswer]) -> None:
        """Routed questions the task's answers left open leave the task: into a follow-up task, queued.

        After ``max_followups`` rounds they go back to the routing pool instead (no task holds them, so
        the next annotation round routes them again). Either way the task records what it left open.
        """
        shown = task_layout(task)
        if shown is None:
            return
        missing = set(question_layout.unanswered(shown, [a.choices or {} for a in answers]))
        if not missing:
            set_review_meta(task, followup=None)
            return
        entries = list((task.payload or {}).get("attributes") or [])
        routed = engine.routed_attributes(session, task)
        keep = [e for e, r in zip(entries, routed, strict=True) if r.category not in missing]
        move = [e for e, r in zip(entries, routed, strict=True) if r.category in missing]
        task.payload = {**(task.payload or {}), "attributes": keep}
        depth = int(review_meta(task).get("depth") or 0)
        follow_up = None
        if move and depth < self.options.max_followups:
            follow_up = ReviewTask(
                person_id=task.person_id,
                kind=task.kind,
                status=QUEUED,
                priority=task.priority,
                payload={
                    "taxonomy_version": (task.payload or {}).get("taxonomy_version"),
                    "purpose": FOLLOW_UP,
                    "attributes": move,
                    "review": {"followup_of": task.id, "depth": depth + 1},
                },
            )
            session.add(follow_up)
            session.flush()
        set_review_meta(task, followup=follow_up.id if follow_up else None, unanswered=sorted(missing))

    def _settle_attributes(self, session: Session, task: ReviewTask, answers: list[ReviewAnswer]) -> None:
        categories = {r.category for r in engine.routed_attributes(session, task)}
        votes: dict[str, dict[str, str]] = {c: {} for c in categories}
        when: dict[str, Any] = {}
        moved = set(review_meta(task).get("unanswered") or [])  # asked again elsewhere: not settled here
        for answer in answers:
            when[answer.annotator] = answer.answered_at
            for category, value in (answer.choices or {}).items():
                if category not in moved:
                    votes.setdefault(category, {})[answer.annotator] = value
        accuracy = self._accuracy if self._accuracy is not None else qa.accuracies(session)
        version = (task.payload or {}).get("taxonomy_version") or self.taxonomy.version
        for category, by_annotator in votes.items():
            group, key = split_category(category)
            _drop_stale_humans(session, task.person_id, group, key, keep=set(by_annotator))
            if not by_annotator:
                human.settle_model_labels(session, person_id=task.person_id, group=group, key=key, value=None)
                continue
            vote = self._aggregate(session, category, by_annotator, accuracy, len(self.taxonomy.options(group, key)))
            for annotator, value in by_annotator.items():
                row = human.store_human_label(
                    session,
                    person_id=task.person_id,
                    group=group,
                    key=key,
                    value=value,
                    annotator=annotator,
                    answered_at=when[annotator],
                    taxonomy_version=version,
                    confidence=vote.distribution.get(value, 0.0),
                    distribution=vote.distribution,
                )
                row.state = AttributeState.human_verified if value == vote.value else AttributeState.rejected
            human.settle_model_labels(session, person_id=task.person_id, group=group, key=key, value=vote.value)

    def _aggregate(
        self, session: Session, category: str, votes: Mapping[str, str], accuracy: Mapping[str, float], n_options: int
    ) -> qa.Vote:
        """Majority, or Dawid-Skene: the answers weighed by each annotator's confusion matrix for this category
        (fitted on gold and overlapped tasks at the last :meth:`refresh_reliability`, or at first use)."""
        if len(votes) == 1 or self.options.aggregation == "majority":
            return qa.majority(votes)
        if self._confusions is None:
            self._confusions = self._fit_confusions(session, accuracy)
        return self._confusions.vote(category, votes, accuracy, n_options)

    def _settle_person(self, session: Session, task: ReviewTask, answer: ReviewAnswer) -> None:
        person = session.get(Person, task.person_id)
        if person is None:
            return
        extra = answer.extra or {}
        if task.kind == "box" and extra.get("box_region"):
            image = session.get(Image, person.image_id)
            person.box = box_from_region(extra["box_region"], image.width, image.height)
        if task.kind == "parsing" and extra.get("parsing_key"):
            person.parsing_key = extra["parsing_key"]
            person.parsing_model = f"human:{answer.annotator}"


def task_layout(task: ReviewTask) -> question_layout.Layout | None:
    """The layout an attribute task was pushed with (``None`` for tasks pushed before layouts existed)."""
    meta = review_meta(task).get("layout")
    return question_layout.Layout.from_meta(meta) if meta else None


def task_person(session: Session, task: ReviewTask) -> tuple[int, int]:
    """(width, height) of the image of a task's person."""
    person = session.get(Person, task.person_id)
    image = session.get(Image, person.image_id)
    return image.width, image.height


def _drop_stale_humans(session: Session, person_id: int, group: int, key: str, keep: set[str]) -> None:
    """Human labels of annotators whose answer is no longer active (deleted, sent back)."""
    session.execute(
        delete(Attribute).where(
            Attribute.person_id == person_id,
            Attribute.group == group,
            Attribute.key == key,
            Attribute.origin == AttributeOrigin.human,
            Attribute.model_version == human.HUMAN_MODEL_VERSION,
            Attribute.annotator.not_in(keep) if keep else Attribute.id.is_not(None),
        )
    )


def _ensure_annotator(session: Session, name: str) -> None:
    if session.scalars(select(ReviewAnnotator.id).where(ReviewAnnotator.name == name)).first() is None:
        session.add(ReviewAnnotator(name=name))
        session.flush()


# ---------------------------------------------------------------------- webhook inbox


def receive_event(session: Session, payload: dict[str, Any]) -> ReviewEvent:
    """Store a webhook payload as received (the route answers right after this)."""
    event = ReviewEvent(action=str(payload.get("action") or "unknown")[:64], payload=payload)
    session.add(event)
    session.flush()
    return event


def process_events(db_url: str, backend: ReviewBackend, applier: Applier, limit: int = 1000) -> SyncReport:
    """Apply stored webhook events in arrival order; a backend outage leaves the rest for later."""
    report = SyncReport()
    with session_scope(db_url) as session:
        ids = list(
            session.scalars(
                select(ReviewEvent.id).where(ReviewEvent.processed_at.is_(None)).order_by(ReviewEvent.id).limit(limit)
            )
        )
    for event_id in ids:
        try:
            with session_scope(db_url) as session:
                event = session.get(ReviewEvent, event_id)
                if event is None or event.processed_at is not None:
                    continue
                _apply_event(session, backend, applier, event, report)
                event.processed_at = utcnow()
                report.events += 1
        except BackendUnavailable:
            break  # try again on the next run; reconciliation covers the gap meanwhile
        except Exception as exc:  # a malformed event must not block the inbox
            log.exception("review event %s failed", event_id)
            with session_scope(db_url) as session:
                event = session.get(ReviewEvent, event_id)
                event.error = f"{type(exc).__name__}: {exc}"[:2000]
                event.processed_at = utcnow()
            report.event_errors += 1
    return report


def _apply_event(
    session: Session, backend: ReviewBackend, applier: Applier, event: ReviewEvent, report: SyncReport
) -> None:
    payload = event.payload or {}
    project_id = str((payload.get("project") or {}).get("id") or "")
    project = session.scalars(
        select(ReviewProject).where(ReviewProject.backend == backend.name, ReviewProject.external_id == project_id)
    ).first()
    if project is None:
        return
    if event.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        ann = payload.get("annotation") or {}
        task = _find_task(session, project, payload.get("task") or {}, str(ann.get("task") or ""))
        if task is None:
            report.orphans += 1
            return
        pulled = PulledAnnotation(
            external_id=str(ann["id"]),
            annotator=backend.annotator_name(ann.get("completed_by")),
            result=ann.get("result") or [],
            lead_time=ann.get("lead_time"),
            created_at=parse_time(ann.get("created_at")),
            revision=str(ann.get("updated_at") or ann.get("created_at")),
            was_cancelled=bool(ann.get("was_cancelled")),
        )
        report.add(applier.apply(session, project, task, pulled, via="webhook"))
    elif event.action == "ANNOTATIONS_DELETED":
        ids = [str(a.get("id")) for a in payload.get("annotations") or []]
        for answer in session.scalars(
            select(ReviewAnswer).where(ReviewAnswer.project_id == project.id, ReviewAnswer.external_id.in_(ids))
        ):
            report.withdrawn += applier.withdraw(session, answer)
    elif event.action == "TASKS_DELETED":
        ids = [str(t.get("id")) for t in payload.get("tasks") or []]
        _tasks_deleted(session, project, ids, report)


def _find_task(session: Session, project: ReviewProject, task_payload: dict, external: str) -> ReviewTask | None:
    ref = (task_payload.get("data") or {}).get(REF_FIELD)
    task = session.get(ReviewTask, int(ref)) if ref is not None else None
    if task is None and external:
        task = session.scalars(
            select(ReviewTask).where(ReviewTask.project_ref == project.external_id, ReviewTask.external_id == external)
        ).first()
    return task


def _tasks_deleted(session: Session, project: ReviewProject, externals: list[str], report: SyncReport) -> None:
    """Tasks deleted in the backend: re-queue the unanswered (re-created on the next push), report the rest."""
    if not externals:
        return
    for task in session.scalars(
        select(ReviewTask).where(
            ReviewTask.project_ref == project.external_id,
            ReviewTask.external_id.in_(externals),
            ReviewTask.status != WITHDRAWN,  # we deleted it ourselves
        )
    ):
        answered = session.scalars(
            select(ReviewAnswer.id).where(ReviewAnswer.task_id == task.id, ReviewAnswer.status == ACTIVE)
        ).first()
        if answered is None:
            task.status, task.external_id = QUEUED, None
            set_review_meta(task, recreated=int(review_meta(task).get("recreated", 0)) + 1)
            report.requeued_deleted += 1
        else:
            set_review_meta(task, deleted_in_backend=True)
            report.deleted_answered.append(task.id)


# ---------------------------------------------------------------------- reconciliation


def reconcile(
    db_url: str, backend: ReviewBackend, applier: Applier, project_id: int, *, full: bool = False, chunk: int = 200
) -> SyncReport:
    """Pull what changed since the cursor (everything when ``full``) and apply it; then move the cursor."""
    report = SyncReport()
    with session_scope(db_url) as session:
        project = session.get(ReviewProject, project_id)
        session.expunge(project)
        applier.refresh_reliability(session)
    since = None
    if project.cursor and not full:
        since = format_cursor(parse_time(project.cursor) - timedelta(seconds=applier.options.sync_overlap_s))
    high = project.cursor
    pending: list[PulledTask] = []
    for pulled in backend.pull(project.external_id, since):
        pending.append(pulled)
        if pulled.updated_at and (high is None or parse_time(pulled.updated_at) > parse_time(high)):
            high = pulled.updated_at
        if len(pending) >= chunk:
            _apply_chunk(db_url, project, applier, pending, report)
            pending = []
    _apply_chunk(db_url, project, applier, pending, report)
    if full:
        present = set(backend.task_refs(project.external_id))
        with session_scope(db_url) as session:
            missing = list(
                session.scalars(
                    select(ReviewTask.external_id).where(
                        ReviewTask.project_ref == project.external_id,
                        ReviewTask.status.in_((PUSHED, ANSWERED)),
                        ReviewTask.external_id.is_not(None),
                    )
                )
            )
            row = session.get(ReviewProject, project.id)
            _tasks_deleted(session, row, [e for e in missing if e not in present], report)
    with session_scope(db_url) as session:
        row = session.get(ReviewProject, project.id)
        row.cursor = high
        row.last_sync_at = utcnow()
    return report


def _apply_chunk(
    db_url: str, project: ReviewProject, applier: Applier, pulled: list[PulledTask], report: SyncReport
) -> None:
    if not pulled:
        return
    with session_scope(db_url) as session:
        refs = [p.ref for p in pulled if p.ref is not None]
        tasks = {t.id: t for t in session.scalars(select(ReviewTask).where(ReviewTask.id.in_(refs)))}
        for item in pulled:
            report.tasks_seen += 1
            task = tasks.get(item.ref) if item.ref is not None else None
            if task is None:
                report.orphans += 1
                continue
            if task.status == PUSHING or (task.status == QUEUED and task.external_id is None):
                task.external_id, task.status = item.external_id, PUSHED  # pushed, but the ids never came back
            for ann in item.annotations:
                report.add(applier.apply(session, project, task, ann, via="reconcile"))
            current = {a.external_id for a in item.annotations}
            for answer in session.scalars(
                select(ReviewAnswer).where(
                    ReviewAnswer.task_id == task.id,
                    ReviewAnswer.project_id == project.id,
                    ReviewAnswer.status.in_((ACTIVE, CANCELLED)),
                )
            ):
                if answer.external_id not in current:
                    report.withdrawn += applier.withdraw(session, answer)


# ---------------------------------------------------------------------- withdrawal


def withdraw_gone(db_url: str, backend: ReviewBackend) -> dict[str, int]:
    """Take tasks away from annotators once their image left the data (demoted, dropped, taken down).

    Open tasks (queued, pushed, gold templates) of such persons are deleted in the backend first, then
    marked ``withdrawn`` with the reason; a backend outage leaves them for the next sync. Answered tasks
    keep their answers. Returns withdrawn counts by reason.
    """
    with session_scope(db_url) as session:
        tasks = list(session.scalars(
            select(ReviewTask)
            .join(Person, Person.id == ReviewTask.person_id)
            .join(Image, Image.id == Person.image_id)
            .where(Image.status != ImageStatus.kept, ReviewTask.status.in_((QUEUED, PUSHED, GOLD_TEMPLATE)))
        ))  # fmt: skip
        gone = gone_persons(session, [t.person_id for t in tasks])
        targets = [(t.id, t.person_id, t.project_ref, t.external_id, t.status) for t in tasks]
    by_project: dict[str, list[str]] = {}
    for _, _, project, external, status in targets:
        if status == PUSHED and project and external:
            by_project.setdefault(project, []).append(external)
    for project, externals in by_project.items():
        backend.delete_tasks(project, externals)
    counts: dict[str, int] = {}
    with session_scope(db_url) as session:
        for task_id, person_id, *_ in targets:
            task = session.get(ReviewTask, task_id)
            if task is None or task.status not in (QUEUED, PUSHED, GOLD_TEMPLATE):
                continue
            reason = gone.get(person_id, "image:gone")
            task.status = WITHDRAWN
            set_review_meta(task, withdrawn=reason, withdrawn_at=utcnow().isoformat())
            counts[reason] = counts.get(reason, 0) + 1
    return counts
