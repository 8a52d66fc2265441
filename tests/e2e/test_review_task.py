"""An annotator's task in a real Label Studio, in Debian's Chromium: a real photo of a man in a suit goes through
ingest and an annotation round, his routed task is pushed, and in the browser the dress questions stay hidden
until "dress" is ticked, a jacket ticked "partly out of frame" is not asked its length, a question another answer
settles (hair colour when bald) hides, the model's scores are shown, and the submitted answers come back as
human-verified labels (the checklist settles the parts he was not wearing; what was left blank goes to a follow-up
task).
Screenshots of the task before and after answering go to tests/artifacts/e2e/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState
from annotate_anyone.db.base import session_scope
from annotate_anyone.settings import Settings
from tests.e2e.conftest import ARTIFACTS
from tests.servers import LS_PASSWORD, LS_USERNAME, app_in_thread

pytestmark = pytest.mark.browser
SUIT = Path(__file__).resolve().parents[1] / "data" / "people-coco" / "COCO_val2014_000000000459.jpg"
TAXONOMY = load_taxonomy()


def _question(page, group: int, key: str):
    return page.get_by_text(TAXONOMY.attribute(group, key).question, exact=True)


def _tick(page, label: str) -> None:
    page.locator(f'input[type=checkbox][name="{label}"]').click()


def _pick(page, group: int, key: str, value: str) -> None:
    """Click the radio of ``value`` in the block of question ``group.key`` (values repeat across questions)."""
    block = _question(page, group, key).locator("xpath=..")
    block.locator(f'input[type=radio][name="{value}"]').click()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_routed_task_shows_presence_first_and_answers_come_back_as_human_labels(
    browser, label_studio, tmp_path: Path
) -> None:
    from annotate_anyone.api.app import create_app
    from annotate_anyone.home.demo import run_flywheel
    from annotate_anyone.review import service

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(SUIT, folder / SUIT.name)
    settings = Settings(
        home=tmp_path / "home",
        workers=1,
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        secret_key="e2e-review-signing-key-0123",
        webhook_secret="e2e-review-webhook-secret-0123",
    )
    run_flywheel(settings, folder, name="suit")  # ingest, one annotation round (and a release)
    with app_in_thread(create_app(settings), name="uvicorn-e2e-review") as api:
        settings = settings.model_copy(update={"public_url": api})  # image links and the webhook point here
        report = service.push_tasks(settings)
        assert report.pushed == 1 and report.failed == 0, report
        with session_scope(settings.db_url) as session:
            task = session.scalars(select(ReviewTask).where(ReviewTask.status == "pushed")).one()
            task_id, person_id, project, external = task.id, task.person_id, task.project_ref, task.external_id
            routed = {f"{e['group']}.{e['key']}" for e in task.payload["attributes"]}
        assert {"5.type", "5.pattern", "19.present", "19.pattern"} <= routed  # round 1: everything is routed

        context = browser.new_context(viewport={"width": 1400, "height": 3400})
        context.set_default_timeout(60_000)
        page = context.new_page()
        loaded: list[tuple[str, int]] = []
        page.on("response", lambda r: loaded.append((r.url, r.status)))
        try:
            page.goto(f"{label_studio.url}/user/login")
            page.fill("input[name=email]", LS_USERNAME)
            page.fill("input[name=password]", LS_PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")
            page.goto(f"{label_studio.url}/projects/{project}/data?task={external}")
            summary = page.get_by_text(re.compile(r"^Model confidence on these \d+ questions: lowest \d+%"))
            summary.wait_for()
            page.locator(".lsf-image img, canvas").first.wait_for()

            dress = [a.key for a in TAXONOMY.group(5).attributes]
            assert all(not _question(page, 5, k).is_visible() for k in dress)  # no dress questions yet
            assert _question(page, 0, "age").is_visible() and page.get_by_text("Which of these").is_visible()
            scores = page.locator(".aa-model")
            assert scores.count() > 5
            assert any(re.search(r"model('s answer,)? (<1|\d+)%", t) for t in scores.all_inner_texts())
            hints = page.get_by_text(re.compile(r"^\[\w\]$")).all()  # Label Studio's "[1]" next to a keyed option
            assert not [h for h in hints if h.is_visible()]  # more options than keys: none rather than some
            _shot(page, "review-01-task-before-answering")
            page.get_by_text("Body-part overlay (the model's parsing): open to compare").click()  # the optional layer
            page.wait_for_timeout(1000)
            assert any("layer=parsing" in url and status == 200 for url, status in loaded), loaded

            _tick(page, "dress")
            _question(page, 5, "pattern").wait_for(state="visible")
            assert all(_question(page, 5, k).is_visible() for k in dress)
            _tick(page, "dress")  # he is not wearing one
            _question(page, 5, "pattern").wait_for(state="hidden")

            for part in ("top", "coat or jacket (partly out of frame)", "tie"):  # the frame cuts his jacket off
                _tick(page, part)
            _question(page, 19, "pattern").wait_for(state="visible")
            assert _question(page, 7, "color").is_visible() and not _question(page, 7, "coat_length").is_visible()
            _pick(page, 3, "hair_style", "bald")  # bald: no hair colour to ask ...
            _question(page, 3, "hair_color").wait_for(state="hidden")
            _pick(page, 3, "hair_style", "cropped")  # ... and back once another style is chosen
            _question(page, 3, "hair_color").wait_for(state="visible")
            assert not _question(page, 3, "hair_length").is_visible()  # cropped hair is short
            _pick(page, 0, "age", "adult")
            _pick(page, 19, "pattern", "striped")
            _pick(page, 7, "color", "brown")
            _pick(page, 6, "collar_shape", "collared")
            _shot(page, "review-02-task-answered")
            with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as posted:
                page.get_by_role("button", name="Submit").click()
            assert posted.value.status == 201, posted.value.text()[:300]
            _shot(page, "review-03-task-submitted")
        finally:
            _shot(page, "review-00-last-state")  # what the browser showed last, kept for a failing run
            context.close()

        service.sync_review(settings, flag=False)
    with session_scope(settings.db_url) as session:
        humans = {
            f"{a.group}.{a.key}": a
            for a in session.scalars(
                select(Attribute).where(Attribute.person_id == person_id, Attribute.origin == AttributeOrigin.human)
            )
        }
        assert all(a.state == AttributeState.human_verified and a.annotator == LS_USERNAME for a in humans.values())
        values = {c: a.value for c, a in humans.items()}
        assert values["0.age"] == "adult" and values["19.pattern"] == "striped" and values["19.present"] == "yes"
        assert values["7.color"] == "brown" and values["6.collar_shape"] == "collared"
        assert values["7.coat_length"] == TAXONOMY.na_value  # cut off by the frame: settled "not visible"
        assert values["3.hair_style"] == "cropped" and "3.hair_color" not in values  # colour left blank
        assert values["3.hair_length"] == "short"  # implied by cropped, never shown
        assert values["5.type"] == values["5.pattern"] == TAXONOMY.na_value  # no dress: settled by the checklist
        assert values["12.present"] == "no" and "6.color" not in values  # no belt; the top's colour left blank
        original = session.get(ReviewTask, task_id)
        assert original.status == "answered"
        follow_up = session.get(ReviewTask, original.payload["review"]["followup"])
        asked_again = {f"{e['group']}.{e['key']}" for e in follow_up.payload["attributes"]}
        assert follow_up.status == "queued" and "6.color" in asked_again and "0.age" not in asked_again
        assert asked_again == routed - set(values)
