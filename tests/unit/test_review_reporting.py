"""What the review page and the round report claim: names people read, rates only from enough answers in a
window, hours saved only for labels actually auto-accepted, partial answers counted as waiting."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from annotate_anyone.annotation.flywheel import flywheel_report
from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.api import dashboard
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, Person
from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.review import qa, question_layout, service
from annotate_anyone.review.models import ReviewAnswer, ReviewProject
from annotate_anyone.settings import Settings

TAXONOMY = load_taxonomy()


def _settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.resolved_home.mkdir(parents=True)
    migrate.upgrade(settings.db_url)
    return settings


def _person(session, n: int = 0) -> Person:
    image = Image(sha256=f"{n:064x}", source_uri=f"t://{n}", storage_key="k", width=10, height=10)
    person = Person(image=image, index=0, box=[0, 0, 10, 10])
    session.add_all([image, person])
    session.flush()
    return person


def test_category_names_read_as_part_and_attribute() -> None:
    assert question_layout.category_title(TAXONOMY, 5, "pattern") == "Dress · pattern"
    assert question_layout.category_title(TAXONOMY, 6, "type") == "Top · kind"
    assert question_layout.category_title(TAXONOMY, 3, "hair_length") == "Hair · length"
    assert question_layout.category_title(TAXONOMY, 19, "present") == "Tie · worn"
    names = {question_layout.category_title(TAXONOMY, c.group, c.key) for c in TAXONOMY.categories()}
    assert len(names) == len(TAXONOMY.categories())  # no two categories read the same


def test_rates_need_enough_answers_in_the_window(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    now = utcnow()
    with session_scope(settings.db_url) as session:
        project = ReviewProject(kind="attributes", taxonomy_version="v", external_id="1", title="t", config_hash="h")
        task = ReviewTask(person_id=_person(session).id, kind="attributes", status="answered")
        session.add_all([project, task])
        session.flush()

        def answer(i: int, who: str, days_ago: float, lead: float) -> ReviewAnswer:
            when = now - timedelta(days=days_ago)
            return ReviewAnswer(project_id=project.id, task_id=task.id, external_id=f"{who}{i}", annotator=who,
                                lead_time=lead, answered_at=when, revision="r", is_gold=i < 2,
                                gold_total=3 if i < 2 else 0, gold_correct=3 if i < 2 else 0)  # fmt: skip

        session.add(answer(0, "once", 0.1, 20.0))  # one quick answer: no rate from that
        session.add_all(answer(i, "steady", 1.0, 30.0) for i in range(25))  # 25 in the window, 30 s each
        session.add_all(answer(100 + i, "steady", 30.0, 300.0) for i in range(25))  # old and slow: outside
        session.flush()
        stats = {s["annotator"]: s for s in qa.annotator_stats(session, now, window_days=7, min_answers=20)}
    assert stats["once"]["answers_per_hour"] is None
    assert stats["once"]["rate_note"] == "not enough answers yet (1 of 20 in the last 7 days)"
    assert stats["once"]["gold_accuracy"] is None and "3 of 5" in stats["once"]["gold_note"]
    assert stats["steady"]["answers_per_hour"] == 120.0 and stats["steady"]["window_answers"] == 25
    assert stats["steady"]["gold_accuracy"] == 1.0 and stats["steady"]["answers"] == 50


def test_hours_saved_count_only_auto_accepted_labels(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with session_scope(settings.db_url) as session:
        pid = _person(session).id

        def label(key: str, state: AttributeState) -> Attribute:
            return Attribute(person_id=pid, group=6, key=key, value="x", confidence=0.5, model_version="m",
                             taxonomy_version="v", state=state, origin=AttributeOrigin.model)  # fmt: skip

        session.add_all([label("color", AttributeState.needs_review), label("pattern", AttributeState.needs_review)])
        session.flush()
        routed_only = flywheel_report(session, config=settings.annotation)["human_hours"]
        session.add(label("material", AttributeState.auto_accepted))
        session.flush()
        one_auto = flywheel_report(session, config=settings.annotation)["human_hours"]
    assert routed_only["saved"] == 0.0  # nothing auto-accepted, no human answer: nothing saved
    assert routed_only["still_open"] == round(2 * routed_only["seconds_per_label"] / 3600, 3)
    assert one_auto["saved"] == round(one_auto["seconds_per_label"] / 3600, 3)


def test_review_page_names_categories_and_counts_questions_waiting(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with session_scope(settings.db_url) as session:
        pid = _person(session).id
        session.add(Attribute(person_id=pid, group=5, key="pattern", value="floral", confidence=0.3,
                              model_version="m", taxonomy_version="v", state=AttributeState.needs_review))  # fmt: skip
        entries = [{"category": "5.pattern"}, {"category": "12.present"}]
        payload = {"purpose": "followup", "attributes": entries}
        session.add(ReviewTask(person_id=pid, kind="attributes", payload=payload))
        session.flush()
        page = dashboard.review_overview(session, settings)
        assert service.review_status(session)["unanswered_questions"] == 2
    assert page["categories"][0]["name"] == "Dress · pattern" and page["categories"][0]["category"] == "5.pattern"
    assert page["follow_ups"] == {"queued": 1} and page["unanswered_questions"] == 2
