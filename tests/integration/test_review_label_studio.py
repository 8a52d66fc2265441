"""Review against a real Label Studio: push, answer as annotators, webhooks, reconciliation, gold, outages."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState
from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_scope
from annotate_anyone.review import configs, question_layout, service
from annotate_anyone.review.client import LabelStudioBackend
from annotate_anyone.review.models import ReviewAnnotator, ReviewAnswer, ReviewEvent, ReviewProject
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.settings import Settings, reveal
from annotate_anyone.storage import open_store
from tests.integration.review_kit import Annotator, ApiServer, asked_categories, make_world, wait_for
from tests.servers import free_port, port_is_free

pytestmark = pytest.mark.services
TAXONOMY = load_taxonomy()


def _settings(tmp_path: Path, label_studio, api_port: int) -> Settings:
    settings = Settings(
        home=tmp_path / "home",
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        public_url=f"http://127.0.0.1:{api_port}",
        webhook_secret="review-test-secret-0123",
        secret_key="review-test-signing-key-0123",
    )
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.db_url)
    return settings


def _app(settings: Settings):
    from annotate_anyone.api.app import create_app
    from annotate_anyone.api.routes import review

    app = create_app(settings)
    if not any(getattr(r, "path", "").startswith("/review/webhook") for r in app.routes):
        app.include_router(review.router)
    return app


def _human_rows(session) -> list[Attribute]:
    return list(session.scalars(select(Attribute).where(Attribute.origin == AttributeOrigin.human)))


def test_push_answer_webhooks_reconcile_gold(tmp_path: Path, label_studio) -> None:
    api_port = free_port(33000, 40000)
    settings = _settings(tmp_path, label_studio, api_port)
    options = ReviewConfig(batch_size=4, gold_rate=0.25, gold_overlap=2, overlap_share=0.0, retries=3, backoff_s=0.2)
    store = open_store(settings=settings)
    world = make_world(settings.db_url, store, TAXONOMY, n=12, n_gold=2, seed=1)
    api = ApiServer(_app(settings), api_port)
    api.start()

    report = service.push_tasks(settings, options=options)
    assert report.pushed == 12 and report.gold == 3 and report.failed == 0

    with session_scope(settings.db_url) as session:
        tasks = list(session.scalars(select(ReviewTask).where(ReviewTask.status != "gold")))
        project = session.scalars(select(ReviewProject)).one()
        assert all(t.status == "pushed" and t.external_id for t in tasks)
        assert len({t.external_id for t in tasks}) == len(tasks) == 15
        first_batch = sorted((t for t in tasks if not t.is_gold), key=lambda t: int(t.external_id))[:3]
        assert [t.priority for t in first_batch] == sorted((t.priority for t in first_batch), reverse=True)

    backend = LabelStudioBackend(label_studio.url, label_studio.token, options)
    sample = next(t for t in tasks if not t.is_gold and len(world.routed[world.tasks[t.id]]) > 1)
    ls_task = backend.sdk.tasks.get(id=int(sample.external_id))
    person = world.tasks[sample.id]
    # partial task: exactly the routed categories, pre-filled with score + version
    shown = [c.id for c in TAXONOMY.categories() if ls_task.data[configs.options_field(c.group, c.key)]]
    assert sorted(shown) == sorted(world.routed[person])
    prediction = ls_task.predictions[0]
    assert prediction.model_version == "offline-1"
    choices = [r for r in prediction.result if r["type"] == "choices"]
    assert choices == []  # the model's answers (0.2-0.6) are below the pre-selection confidence: shown, not selected
    with session_scope(settings.db_url) as session:
        found = session.scalars(select(Attribute).where(Attribute.person_id == person))
        rows = {f"{a.group}.{a.key}": a for a in found}
    assert prediction.score == pytest.approx(min(rows[c].confidence for c in shown))  # the lowest, as labelled
    assert "lowest" in ls_task.data[configs.SUMMARY]
    for c in shown:
        scored = [o for o in ls_task.data[configs.options_field(*_split(c))] if "model" in o.get("html", "")]
        assert rows[c].value in [configs.stored_value(o["value"], TAXONOMY) for o in scored]
    keys = [o.get("hotkey") for c in shown for o in ls_task.data[f"{configs.control_name(*_split(c))}_opts"]]
    assert len([k for k in keys if k]) == len({k for k in keys if k})  # no colliding hotkeys

    good = Annotator(label_studio.url, label_studio.token, "good@annotators.test")
    bad = Annotator(label_studio.url, label_studio.token, "bad@annotators.test")
    gold_by_ref = {}
    with session_scope(settings.db_url) as session:
        for t in session.scalars(select(ReviewTask).where(ReviewTask.is_gold.is_(True), ReviewTask.status != "gold")):
            gold_by_ref[t.id] = t.payload["truth"]

    expected_gold = Counter()
    answered: dict[int, dict[str, str]] = {}  # review task id -> values given (non-gold)

    def work(annotator: Annotator, wrong_on_gold: bool, limit: int) -> int:
        done = 0
        while done < limit:
            task = annotator.next_task(project.external_id)
            if task is None:
                break
            ref = task["data"]["aa_task_id"]
            asked = asked_categories(task, TAXONOMY)
            if ref in gold_by_ref:
                truth = gold_by_ref[ref]
                values = {c: _wrong(c, truth[c]) if wrong_on_gold else truth[c] for c in asked}
                expected_gold[(annotator.email, "correct")] += sum(values[c] == truth[c] for c in asked)
                expected_gold[(annotator.email, "total")] += len(asked)
            else:
                values = {c: world.truth[world.tasks[ref]][c] for c in asked}
                answered[ref] = values
            annotator.answer(task, values, TAXONOMY, lead_time=2.5)
            done += 1
        return done

    # Phase A: webhooks on. Each annotator does a few tasks.
    work(good, False, 5)
    work(bad, True, 4)
    with session_scope(settings.db_url) as session:
        n_before = session.scalar(select(func.count()).select_from(ReviewAnswer))

    def webhooks_applied() -> bool:
        with session_scope(settings.db_url) as session:
            pending = session.scalar(
                select(func.count()).select_from(ReviewEvent).where(ReviewEvent.processed_at.is_(None))
            )
            n = session.scalar(select(func.count()).select_from(ReviewAnswer))
        return pending == 0 and n == 9

    wait_for(webhooks_applied, "webhook events applied")
    assert n_before <= 9
    with session_scope(settings.db_url) as session:
        vias = set(session.scalars(select(ReviewAnswer.via)))
    assert vias == {"webhook"}

    # Phase B: the receiver goes away; annotators finish; reconciliation pulls what webhooks missed.
    api.stop()
    work(good, False, 100)
    work(bad, True, 100)
    result = service.sync_review(settings, options=options, flag=False)
    assert sum(p["new"] for p in result["projects"].values()) > 0
    again = service.sync_review(settings, options=options, flag=False)  # idempotent
    assert all(p["new"] == 0 and p["updated"] == 0 for p in again["projects"].values())

    with session_scope(settings.db_url) as session:
        answers = list(session.scalars(select(ReviewAnswer).where(ReviewAnswer.status == "active")))
        assert len(answers) == len({a.external_id for a in answers})
        humans = _human_rows(session)
        # every routed label of every answered task: exactly one human row, with the value given
        got = Counter((h.person_id, f"{h.group}.{h.key}") for h in humans)
        assert all(v == 1 for v in got.values())
        want = {(world.tasks[ref], c): v for ref, values in answered.items() for c, v in values.items()}
        assert {(h.person_id, f"{h.group}.{h.key}"): h.value for h in humans} == want
        assert all(h.state == AttributeState.human_verified and h.annotator for h in humans)
        assert set(answered) == set(world.tasks)  # every routed task was answered once
        for ref in answered:
            assert session.get(ReviewTask, ref).status == "answered"
        model_rows = session.scalars(select(Attribute).where(Attribute.origin == AttributeOrigin.model)).all()
        for row in model_rows:
            if row.person_id in world.truth and f"{row.group}.{row.key}" in world.routed[row.person_id]:
                ok = row.value == world.truth[row.person_id][f"{row.group}.{row.key}"]
                assert row.state == (AttributeState.human_verified if ok else AttributeState.rejected)
        lead = {a.lead_time for a in answers}
        assert lead == {2.5}

        stats = {
            s["annotator"]: s
            for s in service.annotator_stats(session, options.model_copy(update={"gold_min_answers": 1}))
        }
    for who in (good, bad):
        assert stats[who.email]["gold_correct"] == expected_gold[(who.email, "correct")]
        assert stats[who.email]["gold_total"] == expected_gold[(who.email, "total")]
    assert stats[good.email]["gold_accuracy"] == 1.0
    assert stats[bad.email]["gold_accuracy"] == 0.0

    # Replaying a stored webhook payload changes nothing.
    with session_scope(settings.db_url) as session:
        event = session.scalars(select(ReviewEvent).where(ReviewEvent.action == "ANNOTATION_CREATED")).first()
        payload = dict(event.payload)
        service.accept_webhook(session, settings, secret=reveal(settings.webhook_secret), payload=payload)
    replay = service.handle_events(settings)
    assert replay.unchanged == 1 and replay.new == 0

    # A deleted annotation is withdrawn; a deleted task is re-queued by a full sync and pushed again.
    with session_scope(settings.db_url) as session:
        victim = session.scalars(
            select(ReviewAnswer).where(ReviewAnswer.annotator == good.email, ReviewAnswer.is_gold.is_(False))
        ).first()
        victim_task = session.get(ReviewTask, victim.task_id)
        victim_external, victim_person = victim.external_id, victim_task.person_id
    good.delete(int(victim_external))
    service.sync_review(settings, options=options, flag=False)
    with session_scope(settings.db_url) as session:
        assert (
            session.scalars(select(ReviewAnswer).where(ReviewAnswer.external_id == victim_external)).one().status
            == "deleted"
        )
        assert not [h for h in _human_rows(session) if h.person_id == victim_person]
        assert session.get(ReviewTask, victim.task_id).status == "pushed"
        old_external = session.get(ReviewTask, victim.task_id).external_id
    backend.delete_tasks(project.external_id, [old_external])
    full = service.sync_review(settings, options=options, flag=False, full=True)
    assert sum(p["requeued_deleted"] for p in full["projects"].values()) == 1
    again = service.push_tasks(settings, options=options.model_copy(update={"gold_rate": 0.0}))
    assert again.pushed == 1
    with session_scope(settings.db_url) as session:
        assert session.get(ReviewTask, victim.task_id).external_id not in (None, old_external)

    # Flagging: the bad annotator is below the bar; their recent answers go back for review.
    strict = options.model_copy(update={"gold_min_answers": 1, "gold_threshold": 0.7})
    flags = service.sync_review(settings, options=strict)["flags"]
    assert expected_gold[(bad.email, "total")] > 0 and expected_gold[(good.email, "total")] > 0
    assert flags["flagged"] == [bad.email]
    with session_scope(settings.db_url) as session:
        bad_answers = session.scalars(
            select(ReviewAnswer).where(ReviewAnswer.annotator == bad.email, ReviewAnswer.is_gold.is_(False))
        ).all()
        assert bad_answers and all(a.status == "sent_back" for a in bad_answers)
        assert flags["sent_back"] == len(bad_answers)
        assert not [h for h in _human_rows(session) if h.annotator == bad.email]
        assert session.scalars(select(ReviewAnnotator).where(ReviewAnnotator.name == bad.email)).one().flagged
        requeued = session.scalars(select(ReviewTask).where(ReviewTask.id.in_(flags["requeued_tasks"]))).all()
        assert all(t.status == "queued" for t in requeued)
    backend.close()


def test_push_survives_label_studio_restart(tmp_path: Path, label_studio) -> None:
    settings = _settings(tmp_path, label_studio, free_port(33000, 40000))
    options = ReviewConfig(batch_size=5, gold_rate=0.0, overlap_share=0.0, retries=60, backoff_s=0.5, backoff_max_s=4)
    store = open_store(settings=settings)
    world = make_world(settings.db_url, store, TAXONOMY, n=25, seed=2)
    pusher = service.make_pusher(settings, options=options, webhook=False, store=store)
    restarted = threading.Event()

    def outage(pushed: int) -> None:  # after the second batch: Label Studio goes down, comes back ~2 s later
        if pushed == 10 and not restarted.is_set():
            label_studio.stop()
            threading.Timer(2.0, come_back).start()

    def come_back() -> None:
        wait_for(lambda: port_is_free(label_studio.port), "Label Studio's port to free up")
        label_studio.start()
        restarted.set()

    report = pusher.run(on_batch=outage)
    assert restarted.wait(300)
    assert report.pushed == 25

    # A crash between the import and recording its ids: the next push adopts instead of duplicating.
    extra = make_world(settings.db_url, store, TAXONOMY, n=3, seed=3)
    built = pusher._claim(pusher.project(), 10, type(report)())
    pusher.backend.push(pusher.project().external_id, [out for _, out in built])  # ids never recorded
    second = pusher.run()
    assert second.recovered == 3 and second.pushed == 0 and second.requeued == 0

    refs = pusher.backend.task_refs(pusher.project().external_id)
    counts = Counter(refs.values())
    with session_scope(settings.db_url) as session:
        tasks = session.scalars(select(ReviewTask)).all()
        assert len(tasks) == 28 and all(t.status == "pushed" for t in tasks)
        assert set(counts) == {t.id for t in tasks} and set(counts.values()) == {1}  # one backend task each
        assert {refs[t.external_id] for t in tasks} == {t.id for t in tasks}
    assert len(world.tasks) + len(extra.tasks) == 28


def _split(category: str) -> tuple[int, str]:
    group, key = category.split(".")
    return int(group), key


def _wrong(category: str, value: str) -> str:
    options = TAXONOMY.options(*_split(category))
    return options[(options.index(value) + 1) % len(options)]


def test_partial_answers_come_back_and_tasks_of_images_gone_are_withdrawn(tmp_path: Path, label_studio) -> None:
    """Questions left blank go to a follow-up task; a taken-down or demoted image's tasks leave Label Studio
    (and a queued one never reaches it) on the next sync."""
    from annotate_anyone.catalog.browse import take_down_image
    from annotate_anyone.catalog.dedup import NEAR
    from annotate_anyone.catalog.models import Image, ImageStatus, Person

    settings = _settings(tmp_path, label_studio, free_port(33000, 40000))
    options = ReviewConfig(gold_rate=0.0, overlap_share=0.0, retries=3, backoff_s=0.2)
    store = open_store(settings=settings)
    world = make_world(settings.db_url, store, TAXONOMY, n=3, seed=4)  # 1, 2 and 3 routed questions
    assert service.push_tasks(settings, options=options).pushed == 3
    by_size = {len(world.routed[p]): (t, p) for t, p in world.tasks.items()}
    partial_task, partial_person = by_size[3]
    with session_scope(settings.db_url) as session:
        project = session.scalars(select(ReviewProject)).one().external_id

    annotator = Annotator(label_studio.url, label_studio.token, "partial@annotators.test")
    while (task := annotator.next_task(project)) is not None:
        asked = asked_categories(task, TAXONOMY)
        person = world.tasks[task["data"]["aa_task_id"]]
        if person == partial_person:  # answers one question about the person, skips the checklist
            person_only = [c for c in asked if _split(c)[0] not in question_layout.PART_LABELS]
            answered_now = person_only[:1]
            annotator.answer(task, {c: world.truth[person][c] for c in answered_now}, TAXONOMY, 3.0, parts=False)
        else:
            annotator.answer(task, {c: world.truth[person][c] for c in asked}, TAXONOMY, 3.0)
    service.sync_review(settings, options=options, flag=False)

    left_open = sorted(set(world.routed[partial_person]) - set(answered_now))
    with session_scope(settings.db_url) as session:
        original = session.get(ReviewTask, partial_task)
        assert original.status == "answered" and original.payload["review"]["unanswered"] == left_open
        follow_up = session.get(ReviewTask, original.payload["review"]["followup"])
        assert follow_up.status == "queued" and follow_up.person_id == partial_person
        humans = {(h.person_id, f"{h.group}.{h.key}"): h.value for h in _human_rows(session)}
        assert {c for p, c in humans if p == partial_person} == set(answered_now)
        status = service.review_status(session)
        assert status["follow_ups"] == {"queued": 1} and status["unanswered_questions"] == len(left_open)
    assert service.push_tasks(settings, options=options).pushed == 1  # the follow-up, asking only what is open
    backend = LabelStudioBackend(label_studio.url, label_studio.token, options)
    with session_scope(settings.db_url) as session:
        follow_up_external = session.get(ReviewTask, follow_up.id).external_id
    pushed = backend.sdk.tasks.get(id=int(follow_up_external))
    assert sorted(asked_categories({"data": pushed.data}, TAXONOMY)) == left_open

    # The follow-up's image is taken down, another person's image is demoted (a better near-duplicate came),
    # and a third person, queued but not pushed yet, loses its image too.
    extra = make_world(settings.db_url, store, TAXONOMY, n=1, seed=5)
    ((queued_task, queued_person),) = extra.tasks.items()
    demoted_task, demoted_person = next((t, p) for t, p in world.tasks.items() if p != partial_person)
    with session_scope(settings.db_url) as session:
        demoted_external = session.get(ReviewTask, demoted_task).external_id
        take_down_image(session, image_id=session.get(Person, partial_person).image_id, reason="dmca", requested_by="t")
        for person_id in (demoted_person, queued_person):
            image = session.get(Image, session.get(Person, person_id).image_id)
            image.status, image.drop_reason = ImageStatus.dropped, NEAR
        answered_before = session.get(ReviewTask, demoted_task).status
    result = service.sync_review(settings, options=options, flag=False)
    assert sum(result["withdrawn"].values()) == 2 + (answered_before != "answered")
    remaining = backend.task_refs(project)
    assert follow_up_external not in remaining  # deleted from Label Studio within one sync
    with session_scope(settings.db_url) as session:
        for task_id in (follow_up.id, queued_task):
            task = session.get(ReviewTask, task_id)
            assert task.status == "withdrawn" and task.payload["review"]["withdrawn"], task_id
        assert session.get(ReviewTask, follow_up.id).payload["review"]["withdrawn"].startswith("takedown:")
        assert session.get(ReviewTask, queued_task).payload["review"]["withdrawn"] == NEAR
        if answered_before == "answered":  # its answers stay; the finished task is left as it is
            assert session.get(ReviewTask, demoted_task).status == "answered" and demoted_external in remaining
    again = service.sync_review(settings, options=options, flag=False, full=True)  # nothing re-queued
    assert sum(p["requeued_deleted"] for p in again["projects"].values()) == 0
    assert service.push_tasks(settings, options=options).pushed == 0
    backend.close()
