"""API keys, browser sessions with CSRF, rate limits and the audit log, through the real app (embedded profile)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from annotate_anyone import jobs
from annotate_anyone.access import auth
from annotate_anyone.access.models import ApiKey, AuditEvent
from annotate_anyone.access.ratelimit import MemoryRateLimiter
from annotate_anyone.api.app import create_app
from annotate_anyone.catalog.models import Image
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.settings import Settings


@pytest.fixture
def app_and_admin(embedded: Settings):
    with session_scope(embedded.db_url) as session:
        created = auth.ensure_local_admin(session)
    app = create_app(embedded)
    return app, created


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _login(client: TestClient, username: str, password: str) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/ui/jobs"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return done.headers["set-cookie"]


def test_local_admin_is_created_once(embedded: Settings) -> None:
    with session_scope(embedded.db_url) as session:
        first = auth.ensure_local_admin(session)
        second = auth.ensure_local_admin(session)
    assert first is not None and first["key"].startswith("aa_") and second is None


def test_keys_are_hashed_shown_once_revocable_and_expire(app_and_admin, embedded: Settings) -> None:
    app, admin = app_and_admin
    client = TestClient(app)
    made = client.post("/keys", json={"name": "trainer-bot", "role": "trainer"}, headers=_bearer(admin["key"]))
    assert made.status_code == 201
    raw = made.json()["key"]
    with session_scope(embedded.db_url) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == made.json()["prefix"]))
        assert row.key_hash == hashlib.sha256(raw.encode()).hexdigest() and raw not in row.key_hash
    listed = client.get("/keys", headers=_bearer(admin["key"])).json()
    assert listed["total"] == len(listed["items"]) == 2 and not listed["has_more"]
    assert all("key" not in k for k in listed["items"]) and raw not in str(listed)
    assert client.get("/releases", headers=_bearer(raw)).status_code == 200
    wrong = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert client.get("/releases", headers=_bearer(wrong)).json()["error"] == "unauthorized"
    revoked = client.post(f"/keys/{made.json()['id']}/revoke", headers=_bearer(admin["key"]))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    gone = client.get("/releases", headers=_bearer(raw))
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    assert gone.headers["www-authenticate"] == "Bearer"

    with session_scope(embedded.db_url) as session:
        key, expiring = auth.create_api_key(session, name="short", role="engineer", expires_in_days=1)
        key.expires_at = utcnow() - timedelta(seconds=1)
    expired = client.get("/jobs", headers=_bearer(expiring))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_browser_session_cookie_and_csrf(app_and_admin) -> None:
    app, admin = app_and_admin
    client = TestClient(app)
    assert client.get("/ui/jobs", follow_redirects=False).headers["location"] == "/login?next=/ui/jobs"
    cookie = _login(client, admin["username"], admin["password"])
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "aa_session=" in cookie
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
    # a write without the session's CSRF token is refused, with it (form field or header) it passes
    assert client.post("/ui/sources", data={"uri": "s3://b/x/"}, follow_redirects=False).status_code == 403
    assert client.post("/sources", json={"name": "x", "kind": "s3_prefix", "uri": "s3://b/x/"}).status_code == 403
    ok = client.post("/ui/sources", data={"uri": "s3://b/x/", "csrf_token": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    body = {"name": "y", "kind": "s3_prefix", "uri": "s3://b/y/"}
    ok = client.post("/sources", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/jobs").status_code == 401


def test_login_rejects_bad_passwords_and_is_rate_limited(app_and_admin) -> None:
    app, admin = app_and_admin
    app.state.auth_config = auth.AuthConfig(login_burst=3, login_per_second=0.001)
    client = TestClient(app)
    statuses = []
    for _ in range(4):
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        statuses.append(
            client.post(
                "/login", data={"username": "admin", "password": "wrong-password", "csrf_token": token}
            ).status_code
        )
    assert statuses == [401, 401, 401, 429]
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    blocked = client.post("/login", data={"username": "admin", "password": admin["password"], "csrf_token": token})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    forged = client.post("/login", data={"username": "admin", "password": admin["password"], "csrf_token": "forged"})
    assert forged.status_code == 403


def test_key_requests_are_rate_limited(app_and_admin) -> None:
    app, admin = app_and_admin
    app.state.auth_config = auth.AuthConfig(key_burst=5, key_per_second=0.001)
    client = TestClient(app)
    codes = [client.get("/jobs", headers=_bearer(admin["key"])).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    limited = client.get("/jobs", headers=_bearer(admin["key"]))
    assert limited.json()["error"] == "rate_limited" and "retry-after" in limited.headers


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", capacity=2, rate=1.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    now[0] = 1.0
    assert limiter.take("k", capacity=2, rate=1.0) == 0.0
    assert limiter.take("other", capacity=2, rate=1.0) == 0.0


def test_redis_rate_limiter_shares_one_bucket(redis_url: str) -> None:
    from annotate_anyone.access.ratelimit import RedisRateLimiter

    a, b = RedisRateLimiter(redis_url, namespace="aa-test:"), RedisRateLimiter(redis_url, namespace="aa-test:")
    assert a.take("key", capacity=2, rate=0.01) == 0.0
    assert b.take("key", capacity=2, rate=0.01) == 0.0
    assert a.take("key", capacity=2, rate=0.01) > 1.0  # the second process spent the same bucket


def test_audit_log_records_who_started_cancelled_and_took_down(app_and_admin, embedded: Settings) -> None:
    app, admin = app_and_admin
    client = TestClient(app)
    headers = _bearer(admin["key"])
    engineer = client.post("/keys", json={"name": "eng", "role": "engineer"}, headers=headers).json()["key"]
    job = client.post("/jobs", json={"kind": "export", "params": {"preset": "all-accepted"}}, headers=_bearer(engineer))
    assert job.status_code == 202
    with session_scope(embedded.db_url) as session:  # a queued job nobody runs, and an image
        queued = jobs.create_job(session, kind="ingest", params={"source_ids": []}).id
        image = Image(sha256="ab" * 32, source_uri="file:///x.jpg", storage_key="", width=10, height=10)
        session.add(image)
        session.flush()
        image_id = image.id
    assert client.post(f"/jobs/{queued}/cancel", headers=_bearer(engineer)).json()["status"] == "cancelled"
    refused = client.post(f"/images/{image_id}/takedown", json={"reason": "asked"}, headers=_bearer(engineer))
    assert refused.status_code == 403
    down = client.post(f"/images/{image_id}/takedown", json={"reason": "subject asked"}, headers=headers)
    assert down.status_code == 200 and down.json()["status"] == "taken_down"
    events = client.get("/audit", headers=headers).json()
    actions = [(e["action"], e["actor"].split(" ")[0], e["target_type"]) for e in events["items"]]
    assert ("job.start", "key:eng", "job") in actions
    assert ("key.create", "key:local-admin", "api_key") in actions
    assert ("job.cancel", "key:eng", "job") in actions
    assert ("image.takedown", "key:local-admin", "image") in actions
    assert events["total"] >= 2
    only_starts = client.get("/audit", params={"action": "job.start"}, headers=headers).json()
    assert {e["action"] for e in only_starts["items"]} == {"job.start"}
    with session_scope(embedded.db_url) as session:
        assert session.scalar(select(AuditEvent).where(AuditEvent.action == "job.start")).role == "engineer"


def test_admin_actions_are_audited_alike_from_the_api_and_the_dashboard(app_and_admin, embedded: Settings) -> None:
    """Key create/revoke, user create and image takedown leave the same audit row whichever door they came
    through (JSON with an API key, or a dashboard form with the session cookie and CSRF token)."""
    app, admin = app_and_admin
    api, web = TestClient(app), TestClient(app)
    headers = _bearer(admin["key"])
    _login(web, admin["username"], admin["password"])
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', web.get("/ui/jobs").text).group(1)
    with session_scope(embedded.db_url) as session:
        images = [Image(sha256=f"{i:064x}", source_uri="/x.jpg", storage_key="", width=9, height=9) for i in (1, 2)]
        session.add_all(images)
        session.flush()
        by_api, by_form = (image.id for image in images)

    api_key = api.post("/keys", json={"name": "via-api", "role": "trainer"}, headers=headers).json()
    assert api.post(f"/keys/{api_key['id']}/revoke", headers=headers).status_code == 200
    assert api.post("/users", json={"username": "ann", "password": "long-enough-1", "role": "annotator"},
                    headers=headers).status_code == 201  # fmt: skip
    assert api.post(f"/images/{by_api}/takedown", json={"reason": "asked"}, headers=headers).status_code == 200

    def form(path: str, **data: str) -> None:
        response = web.post(path, data={**data, "csrf_token": csrf}, follow_redirects=False)
        assert response.status_code in (200, 303), (path, response.text[:300])

    form("/ui/admin/keys", name="via-form", role="trainer")
    with session_scope(embedded.db_url) as session:
        form_key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "via-form"))
    form(f"/ui/admin/keys/{form_key_id}/revoke")
    form("/ui/admin/users", username="bob", password="long-enough-2", role="annotator")
    form(f"/ui/images/{by_form}/takedown", reason="asked")

    with session_scope(embedded.db_url) as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        rows = [(e.action, e.target_type, e.actor.split(" ")[0]) for e in events]
    expected = [("key.create", "api_key"), ("key.revoke", "api_key"), ("user.create", "user"),
                ("image.takedown", "image")]  # fmt: skip
    via_api = [(a, t) for a, t, actor in rows if actor.startswith("key:") and a != "auth.login"]
    via_form = [(a, t) for a, t, actor in rows if actor.startswith("user:") and a != "auth.login"]
    assert via_api == expected and via_form == expected, rows
