"""Push queued review tasks to the backend: batched, most uncertain first, gold mixed in, resumable.

A batch is marked ``pushing`` (committed) before the backend call and ``pushed`` with its backend ids
after. If the process or the backend dies in between, the next push first *recovers*: it asks the backend
which of the ``pushing`` tasks exist (by the ``aa_task_id`` every task carries), adopts them, deletes
duplicates, and re-queues the rest. So a task is never lost and never created twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.catalog.models import Image, ImageStatus, Person
from annotate_anyone.db.base import session_scope
from annotate_anyone.errors import AnnotateAnyoneError
from annotate_anyone.review import configs, engine, question_layout
from annotate_anyone.review.builders import TaskBuilder
from annotate_anyone.review.client import OutTask, ReviewBackend
from annotate_anyone.review.models import ReviewProject
from annotate_anyone.review.settings import ReviewConfig

log = logging.getLogger(__name__)

QUEUED, PUSHING, PUSHED, ANSWERED, FAILED = "queued", "pushing", "pushed", "answered", "failed"
WITHDRAWN = "withdrawn"  # its image left the data (demoted, dropped, taken down): deleted from the backend
GOLD_TEMPLATE = "gold"  # status of a gold item itself; each time it is mixed in, a copy is pushed


@dataclass
class PushReport:
    """What one push did."""

    pushed: int = 0
    gold: int = 0
    batches: int = 0
    recovered: int = 0
    requeued: int = 0
    duplicates_deleted: int = 0
    failed: int = 0
    withdrawn: int = 0
    errors: list[str] = field(default_factory=list)


def review_meta(task: ReviewTask) -> dict:
    """Review's own bookkeeping inside the task payload (overlap, batch, errors)."""
    return dict((task.payload or {}).get("review") or {})


def set_review_meta(task: ReviewTask, **values: object) -> None:
    task.payload = {**(task.payload or {}), "review": {**review_meta(task), **values}}


def gone_persons(session: Session, person_ids: list[int]) -> dict[int, str]:
    """Persons whose image is no longer kept (demoted near-duplicate, dropped, taken down) -> the reason."""
    rows = session.execute(
        select(Person.id, Image.status, Image.drop_reason)
        .join(Image, Image.id == Person.image_id)
        .where(Person.id.in_(person_ids), Image.status != ImageStatus.kept)
    )
    return {pid: reason or f"image:{status.value}" for pid, status, reason in rows}


def overlap_for(task_id: int, options: ReviewConfig) -> int:
    """Deterministic choice of the tasks answered by several annotators (``overlap_share`` of them)."""
    return options.overlap if (task_id * 2654435761) % 1000 < options.overlap_share * 1000 else 1


def ensure_project(session: Session, backend: ReviewBackend, spec: configs.ProjectSpec) -> ReviewProject:
    """The project row for ``spec``, created in the backend (or its config updated) as needed."""
    project = session.scalars(
        select(ReviewProject).where(
            ReviewProject.backend == backend.name,
            ReviewProject.kind == spec.kind,
            ReviewProject.taxonomy_version == spec.taxonomy_version,
        )
    ).first()
    if project is None:
        external = backend.ensure_project(spec)
        project = ReviewProject(
            backend=backend.name,
            kind=spec.kind,
            taxonomy_version=spec.taxonomy_version,
            external_id=external,
            title=spec.title,
            config_hash=spec.config_hash,
        )
        session.add(project)
        session.flush()
    elif project.config_hash != spec.config_hash:
        backend.ensure_project(spec, project.external_id)
        project.config_hash = spec.config_hash
    return project


class Pusher:
    """Pushes one kind of task for one taxonomy to one backend."""

    def __init__(
        self,
        *,
        db_url: str,
        backend: ReviewBackend,
        taxonomy: Taxonomy,
        builder: TaskBuilder,
        options: ReviewConfig,
        kind: str = "attributes",
        webhook: tuple[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.backend = backend
        self.taxonomy = taxonomy
        self.builder = builder
        self.options = options
        self.kind = kind
        self.webhook = webhook  # (url, secret)
        self._gold_debt = 0.0
        self._version: str | None = None

    def project(self) -> ReviewProject:
        with session_scope(self.db_url) as session:
            spec = configs.project_spec(self.kind, self.taxonomy, preselect=self.options.preselect_confidence)
            project = ensure_project(session, self.backend, spec)
        if self.webhook:
            self.backend.ensure_webhook(project.external_id, *self.webhook)
        return project

    def run(self, *, limit: int | None = None, on_batch: Callable[[int], None] | None = None) -> PushReport:
        """Recover interrupted batches, then push queued tasks until none (or ``limit``) remain."""
        report = PushReport()
        project = self.project()
        self.recover(project, report)
        while limit is None or report.pushed < limit:
            size = self.options.batch_size if limit is None else min(self.options.batch_size, limit - report.pushed)
            batch = self._claim(project, size, report)
            if not batch:
                break
            self._send(project, batch, report)
            report.batches += 1
            if on_batch:
                on_batch(report.pushed)
        return report

    # ------------------------------------------------------------------ steps

    def recover(self, project: ReviewProject, report: PushReport) -> None:
        """Settle tasks left ``pushing``: adopt what the backend has, delete duplicates, re-queue the rest."""
        with session_scope(self.db_url) as session:
            stranded = list(
                session.scalars(
                    select(ReviewTask).where(
                        ReviewTask.status == PUSHING, ReviewTask.project_ref == project.external_id
                    )
                )
            )
            if not stranded:
                return
            found = self.backend.task_refs(project.external_id, [t.id for t in stranded])
            by_ref: dict[int, list[str]] = {}
            for external, ref in found.items():
                if ref is not None:
                    by_ref.setdefault(int(ref), []).append(external)
            extra: list[str] = []
            for task in stranded:
                externals = sorted(by_ref.get(task.id, []), key=int)
                if externals:
                    task.external_id, task.status = externals[0], PUSHED
                    extra += externals[1:]
                    report.recovered += 1
                else:
                    task.status, task.external_id = QUEUED, None
                    report.requeued += 1
        if extra:
            self.backend.delete_tasks(project.external_id, extra)
            report.duplicates_deleted += len(extra)

    def _claim(self, project: ReviewProject, size: int, report: PushReport) -> list[tuple[ReviewTask, OutTask]]:
        """Pick the most uncertain queued tasks (plus gold), build them, and mark them ``pushing``."""
        token = uuid.uuid4().hex[:12]
        with session_scope(self.db_url) as session:
            tasks = list(
                session.scalars(
                    select(ReviewTask)
                    .where(ReviewTask.status == QUEUED, ReviewTask.kind == self.kind)
                    .order_by(ReviewTask.is_gold.desc(), ReviewTask.priority.desc(), ReviewTask.id)
                    .limit(size)
                )
            )
            real = sum(1 for t in tasks if not t.is_gold)
            tasks = self._mix_gold(session, tasks, real)
            built: list[tuple[ReviewTask, OutTask]] = []
            gone = gone_persons(session, [t.person_id for t in tasks if t.person_id is not None])
            for task in tasks:
                if task.person_id in gone:
                    task.status = WITHDRAWN
                    set_review_meta(task, withdrawn=gone[task.person_id])
                    report.withdrawn += 1
                    continue
                try:
                    out = self._build(session, task)
                except (AnnotateAnyoneError, KeyError, ValueError) as exc:
                    task.status = FAILED
                    set_review_meta(task, error=f"{type(exc).__name__}: {exc}")
                    report.failed += 1
                    report.errors.append(f"task {task.id}: {exc}")
                    continue
                task.status, task.project_ref = PUSHING, project.external_id
                set_review_meta(task, batch=token, overlap=out.overlap)
                built.append((task, out))
            session.flush()
            session.expunge_all()
        return built

    def _mix_gold(self, session: Session, tasks: list[ReviewTask], real: int) -> list[ReviewTask]:
        """Interleave gold copies at ``gold_rate`` per real task, evenly spread through the batch."""
        self._gold_debt += real * self.options.gold_rate
        wanted = int(self._gold_debt)
        if not wanted:
            return tasks
        templates = self._gold_templates(session)
        if not templates:
            return tasks
        self._gold_debt -= wanted
        copies = []
        for i in range(wanted):
            template = templates[i % len(templates)]
            copy = ReviewTask(
                person_id=template.person_id,
                kind=template.kind,
                status=QUEUED,
                priority=template.priority,
                payload={**(template.payload or {}), "gold_of": template.id},
                is_gold=True,
            )
            session.add(copy)
            copies.append(copy)
        session.flush()
        mixed = list(tasks)
        step = max(1, len(tasks) // (len(copies) + 1))
        for i, copy in enumerate(copies):
            mixed.insert(min(len(mixed), (i + 1) * step + i), copy)
        return mixed

    def _gold_templates(self, session: Session) -> list[ReviewTask]:
        """Gold items of this kind, least used first."""
        templates = list(
            session.scalars(
                select(ReviewTask).where(
                    ReviewTask.is_gold.is_(True), ReviewTask.status == GOLD_TEMPLATE, ReviewTask.kind == self.kind
                )
            )
        )
        if not templates:
            return []
        uses = dict(
            session.execute(
                select(ReviewTask.payload["gold_of"].as_integer(), func.count())
                .where(ReviewTask.is_gold.is_(True), ReviewTask.status != GOLD_TEMPLATE)
                .group_by(ReviewTask.payload["gold_of"].as_integer())
            ).all()
        )
        return sorted(templates, key=lambda t: (uses.get(t.id, 0), t.id))

    def _build(self, session: Session, task: ReviewTask) -> OutTask:
        person = session.get(Person, task.person_id) if task.person_id is not None else None
        image = session.get(Image, person.image_id) if person is not None else None
        if person is None or image is None:
            raise KeyError(f"person {task.person_id} or its image is gone")
        overlap = self.options.gold_overlap if task.is_gold else overlap_for(task.id, self.options)
        if self.kind == "attributes":
            routed = engine.routed_attributes(session, task)
            if not routed:
                raise ValueError("no routed attributes")
            plan = question_layout.plan(self.taxonomy, [(r.group, r.key) for r in routed])
            set_review_meta(task, layout=plan.to_meta())
            return self.builder.attributes(task, person, image, routed, overlap, plan=plan)
        if self.kind == "box":
            return self.builder.box(task, person, image, overlap)
        return self.builder.parsing(task, person, image, overlap)

    def _send(self, project: ReviewProject, batch: list[tuple[ReviewTask, OutTask]], report: PushReport) -> None:
        """One backend call for the batch; on success record the ids (on failure ``recover`` settles it)."""
        versions = {p.get("model_version") for _, out in batch for p in out.predictions}
        externals = self.backend.push(project.external_id, [out for _, out in batch])
        with session_scope(self.db_url) as session:
            for (task, _), external in zip(batch, externals, strict=True):
                row = session.get(ReviewTask, task.id)
                if row is not None:
                    row.external_id, row.status = external, PUSHED
        report.pushed += sum(1 for t, _ in batch if not t.is_gold)
        report.gold += sum(1 for t, _ in batch if t.is_gold)
        if len(versions) == 1:
            version = versions.pop()
            if version and version != self._version:
                self.backend.set_model_version(project.external_id, version)
                self._version = version
