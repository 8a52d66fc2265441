"""A live server (uvicorn in a thread, embedded profile in a temporary home) and Debian's Chromium via Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from annotate_anyone.settings import Settings
from tests.servers import app_in_thread

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "e2e"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ADMIN = ("ada", "ada-password-123")


@dataclass
class LiveServer:
    url: str
    settings: Settings
    demo_folder: Path


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from annotate_anyone.access import auth
    from annotate_anyone.api.app import create_app
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.home.demo import demo_settings, write_demo_images
    from annotate_anyone.home.setup import init_home

    root = tmp_path_factory.mktemp("e2e")
    settings = demo_settings(Settings(home=root / "home", workers=1, source_roots=[root]))  # the admin adds a folder
    init_home(settings)
    folder = root / "demo-images"
    write_demo_images(folder)
    with session_scope(settings.db_url) as session:
        auth.create_user(session, username=ADMIN[0], password=ADMIN[1], role="admin")
    with app_in_thread(create_app(settings), name="uvicorn-e2e") as url:
        yield LiveServer(url, settings, folder)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, live_server: LiveServer) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def shot(page: object, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/e2e/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
