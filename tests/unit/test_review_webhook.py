"""The webhook receiver: shared secret checked, event stored and answered at once, work deferred."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_scope
from annotate_anyone.review.models import ReviewEvent
from annotate_anyone.settings import Settings

SECRET = "webhook-secret-for-tests-0123"


def _client(tmp_path: Path) -> tuple[TestClient, Settings]:
    from annotate_anyone.api.app import create_app
    from annotate_anyone.api.routes import review

    settings = Settings(
        home=tmp_path / "home",
        webhook_secret=SECRET,
        label_studio_url="http://127.0.0.1:9",  # never reached: the event names no known project
        label_studio_token="t" * 40,
    )
    settings.resolved_home.mkdir(parents=True)
    migrate.upgrade(settings.db_url)
    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/review/webhook" for r in app.routes):
        app.include_router(review.router)
    return TestClient(app), settings


def test_webhook_checks_the_secret_and_stores_the_event(tmp_path: Path) -> None:
    client, settings = _client(tmp_path)
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 999}, "annotation": {"id": 1}, "task": {"id": 2}}
    assert client.post("/review/webhook", json=body).status_code == 403
    assert client.post("/review/webhook", json=body, headers={"X-AA-Webhook-Secret": "wrong"}).status_code == 403
    response = client.post("/review/webhook", json=body, headers={"X-AA-Webhook-Secret": SECRET})
    assert response.status_code == 202
    with session_scope(settings.db_url) as session:
        events = session.scalars(select(ReviewEvent)).all()
        assert [e.action for e in events] == ["ANNOTATION_CREATED"]
        assert events[0].payload == body
        assert events[0].processed_at is not None and events[0].error is None  # deferred task ran after the reply


def test_media_link_needs_a_valid_signature(tmp_path: Path) -> None:
    client, _ = _client(tmp_path)
    response = client.get("/review/media/1", params={"exp": 1, "sig": "0" * 64})
    assert response.status_code == 422
