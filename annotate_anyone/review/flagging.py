"""Annotators whose gold accuracy falls below the threshold: flag them and send their recent answers back.

Sending back keeps the answer (status ``sent_back``), drops the human labels it produced, re-settles the
task, and queues a fresh copy of the task (high priority) so someone else answers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.review import qa
from annotate_anyone.review.models import ReviewAnnotator, ReviewAnswer
from annotate_anyone.review.push import QUEUED
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.review.sync import ACTIVE, SENT_BACK, Applier


@dataclass
class FlagReport:
    flagged: list[str] = field(default_factory=list)
    sent_back: int = 0
    requeued_tasks: list[int] = field(default_factory=list)


def flag_annotators(session: Session, applier: Applier, options: ReviewConfig, now: datetime) -> FlagReport:
    """Flag annotators below ``gold_threshold`` (with at least ``gold_min_answers``) and send work back."""
    report = FlagReport()
    for name, (correct, total) in sorted(qa.gold_accuracy(session).items()):
        if total < options.gold_min_answers or correct / total >= options.gold_threshold:
            continue
        member = session.scalars(select(ReviewAnnotator).where(ReviewAnnotator.name == name)).first()
        if member is None:
            member = ReviewAnnotator(name=name)
            session.add(member)
        if not member.flagged:
            member.flagged, member.flagged_at = True, now
            member.flag_reason = (
                f"gold accuracy {correct}/{total} = {correct / total:.0%} < {options.gold_threshold:.0%}"
            )
            report.flagged.append(name)
        send_back(session, applier, name, since=now - timedelta(days=options.send_back_days), report=report)
    return report


def send_back(session: Session, applier: Applier, annotator: str, *, since: datetime, report: FlagReport) -> None:
    """Send ``annotator``'s non-gold answers since ``since`` back for review (idempotent)."""
    answers = list(
        session.scalars(
            select(ReviewAnswer).where(
                ReviewAnswer.annotator == annotator,
                ReviewAnswer.status == ACTIVE,
                ReviewAnswer.is_gold.is_(False),
                ReviewAnswer.answered_at >= since,
            )
        )
    )
    for answer in answers:
        answer.status = SENT_BACK
        session.flush()
        task = session.get(ReviewTask, answer.task_id)
        if task is None:
            continue
        applier.settle(session, task)
        copy = ReviewTask(
            person_id=task.person_id,
            kind=task.kind,
            status=QUEUED,
            priority=max(task.priority, 1.0) + 1.0,
            payload={**{k: v for k, v in (task.payload or {}).items() if k != "review"}, "resend_of": task.id},
            is_gold=False,
        )
        session.add(copy)
        session.flush()
        report.sent_back += 1
        report.requeued_tasks.append(copy.id)
