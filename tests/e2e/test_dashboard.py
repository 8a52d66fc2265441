"""The dashboard in a real browser (Debian's Chromium): log in by keyboard, ingest the demo images and watch the
progress bar reach the end, open an image with its overlay, export two releases and open the second's diff.
Screenshots go to tests/artifacts/e2e/. The tests run in file order and share one live server."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import ADMIN, LiveServer, shot

pytestmark = pytest.mark.browser


def login(page, next_path: str = "/ui/") -> None:
    page.goto(f"/login?next={next_path}")
    page.get_by_label("Username").fill(ADMIN[0])
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN[1])
    with page.expect_navigation():
        page.keyboard.press("Enter")  # submit by keyboard
    assert page.url.endswith(next_path), (page.url, page.locator("body").inner_text()[:500])


def wait_for_job(page, timeout_ms: int = 240_000) -> str:
    """On a job page: wait until the live progress bar says the job ended; returns the final status."""
    page.wait_for_function(
        "['succeeded', 'failed', 'cancelled'].includes(document.getElementById('job').dataset.status)",
        timeout=timeout_ms,
    )
    return page.locator("#job").get_attribute("data-status")


def start_job(page, form_heading: str) -> None:
    page.goto("/ui/jobs")
    form = page.locator("form", has=page.get_by_role("heading", name=form_heading))
    form.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/ui/jobs/\d+$"))


def test_login_then_ingest_with_live_progress(page, live_server: LiveServer) -> None:
    page.goto("/ui/jobs")
    assert "/login" in page.url  # not logged in: sent to the login form
    login(page, "/ui/jobs")
    page.get_by_label("Folder, URL list file or s3://bucket/prefix").fill(str(live_server.demo_folder))
    page.get_by_label("Name (optional)").fill("demo")
    page.get_by_role("button", name="Add source").click()
    page.wait_for_url(re.compile(r"/ui/jobs\?source=\d+"))
    page.get_by_label("Source").select_option(label="demo")
    page.get_by_role("button", name="Start ingest").click()
    page.wait_for_url(re.compile(r"/ui/jobs/\d+$"))
    shot(page, "01-ingest-started")
    assert wait_for_job(page) == "succeeded", page.locator("#job-error").inner_text()
    bar = page.locator("#job-progress")
    assert float(bar.get_attribute("data-progress")) == 1.0
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    count = page.locator("#job-count").inner_text()
    done, total = (int(n) for n in count.split("/"))
    files = [f for f in live_server.demo_folder.rglob("*") if f.is_file()]
    assert done == total == len(files)  # every file listed and processed: kept, duplicate or dropped with a reason
    shot(page, "02-ingest-finished")
    page.goto("/ui/")
    assert page.get_by_role("heading", name=re.compile("^demo")).is_visible()
    assert page.locator("figure.chart svg rect").count() >= 3  # the funnel chart of the source
    shot(page, "03-overview-funnel")


def test_annotate_round_when_available(page, live_server: LiveServer) -> None:
    login(page, "/ui/jobs")
    start_job(page, "Start an annotation round")
    status = wait_for_job(page)
    shot(page, "04-annotate-finished")
    assert status == "succeeded", page.locator("#job-error").inner_text()


def test_image_with_overlay(page, live_server: LiveServer) -> None:
    login(page, "/ui/images?status=kept")
    rows = page.locator("#image-list tbody tr")
    assert rows.count() >= 1
    with_person = [i for i in range(rows.count()) if int(rows.nth(i).locator("td.num").inner_text() or 0) > 0]
    assert with_person, "no kept image has a person"
    rows.nth(with_person[0]).get_by_role("link").click()
    page.wait_for_url(re.compile(r"/ui/images/\d+$"))
    page.wait_for_function("document.getElementById('overlay').dataset.drawn !== undefined")
    assert page.locator("#overlay rect.box").count() >= 1
    assert page.locator("#overlay circle.kp").count() >= 5  # pose keypoints drawn over the photo
    assert page.evaluate("document.getElementById('photo').naturalWidth") > 0  # served by the authenticated endpoint
    overlays = page.evaluate("JSON.parse(document.getElementById('overlay-data').textContent)")
    if any(p["parsing"] for p in overlays):
        page.wait_for_function("document.getElementById('parsing-layer').dataset.drawn === '1'")
    shot(page, "05-image-overlay")
    page.get_by_role("checkbox", name="keypoints").uncheck()  # layers toggle from the keyboard-reachable checkboxes
    assert page.locator("#overlay circle.kp").count() == 0
    assert page.get_by_role("button", name="Take down").is_visible()  # admins see the takedown form


def test_release_and_its_diff(page, live_server: LiveServer) -> None:
    login(page, "/ui/jobs")
    for n in (1, 2):
        start_job(page, "Export a release")
        status = wait_for_job(page)
        shot(page, f"06-export-{n}")
        assert status == "succeeded", page.locator("#job-error").inner_text()
    page.goto("/ui/releases")
    links = page.locator("#release-list tbody tr td:first-child a")
    assert links.count() == 2
    newest = links.first.inner_text()
    links.first.click()
    page.wait_for_url(re.compile(f"/ui/releases/{re.escape(newest)}$"))
    summary = page.locator("#manifest-summary")
    assert summary.get_by_role("link").first.inner_text() == links_parent(live_server, newest)
    assert page.locator("#downloads a").count() >= 2
    diff = page.locator("#diff")
    assert diff.get_by_role("heading").inner_text().startswith("Changes against ")
    assert "No diff" not in diff.inner_text()
    shot(page, "07-release-diff")
    manifest = page.request.get(f"/releases/{newest}/files/manifest.json")
    assert manifest.ok and manifest.json()["version"] == newest


def links_parent(live_server: LiveServer, version: str) -> str:
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.release.service import get_release

    with session_scope(live_server.settings.db_url) as session:
        return get_release(session, version).parent_version


def test_keyboard_skip_link_and_focus(page, live_server: LiveServer) -> None:
    login(page, "/ui/")
    page.wait_for_load_state("load")
    # start keyboard navigation from the top of the document, as a fresh page load does
    page.evaluate("() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex'); }")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.keyboard.press("Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"  # a visible focus ring
