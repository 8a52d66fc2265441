"""Each role against each protected route: the issue's rules, written out by hand (not derived from the code).

An annotator cannot start exports (or any job), a trainer can only read releases, only admins manage keys,
users, the audit log and takedowns. "Allowed" means the role check passed (the answer may still be 404/422).
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from annotate_anyone.access import auth
from annotate_anyone.api.app import create_app
from annotate_anyone.api.auth import current_principal
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.base import Executor
from annotate_anyone.settings import Settings

ROLES = ("admin", "engineer", "annotator", "trainer")
POOL = {"admin", "engineer", "annotator"}
BUILD = {"admin", "engineer"}
ADMIN = {"admin"}
EVERYONE = set(ROLES)
RELEASES = {"admin", "engineer", "trainer"}  # annotators work in Label Studio, not on releases

# (method, path, json body or form, roles allowed)
ROUTES: list[tuple[str, str, dict | None, set[str]]] = [
    ("GET", "/sources", None, POOL),
    ("POST", "/sources", {"name": "s", "kind": "s3_prefix", "uri": "s3://bucket/p/"}, BUILD),
    ("POST", "/sources", {"name": "f", "kind": "folder", "uri": "/nowhere"}, ADMIN),  # a path on the server
    ("POST", "/sources", {"name": "u", "kind": "url_list", "uri": "/nowhere/urls.csv"}, ADMIN),
    ("POST", "/sources", {"name": "p", "kind": "s3_prefix", "uri": "s3://b/p/", "allow_private": True}, ADMIN),
    ("POST", "/ui/sources", {"form": {"uri": "/nowhere"}}, ADMIN),
    ("POST", "/ui/sources", {"form": {"uri": "s3://bucket/ui/"}}, BUILD),
    ("GET", "/sources/1", None, POOL),
    ("GET", "/sources/1/funnel", None, POOL),
    ("GET", "/images", None, POOL),
    ("GET", "/images?attribute=hair%20color%3Dblack", None, POOL),
    ("GET", "/images/1", None, POOL),
    ("GET", "/images/1/original", None, POOL),
    ("GET", "/images/1/persons/0/parsing", None, POOL),
    ("POST", "/images/1/takedown", {"reason": "asked"}, ADMIN),
    ("GET", "/jobs", None, POOL),
    ("GET", "/jobs/1", None, POOL),
    ("POST", "/jobs", {"kind": "ingest", "params": {"source_ids": [999]}}, BUILD),
    ("POST", "/jobs", {"kind": "export", "params": {}}, BUILD),
    ("POST", "/jobs/1/cancel", None, BUILD),
    ("GET", "/releases", None, RELEASES),
    ("GET", "/releases/2026.01.01.1", None, RELEASES),
    ("GET", "/releases/2026.01.01.1/manifest", None, RELEASES),
    ("GET", "/releases/2026.01.01.1/changes", None, RELEASES),
    ("GET", "/releases/2026.01.01.1/files/index.parquet", None, RELEASES),
    ("GET", "/keys", None, ADMIN),
    ("POST", "/keys", {"name": "k", "role": "trainer"}, ADMIN),
    ("POST", "/keys/99/revoke", None, ADMIN),
    ("GET", "/users", None, ADMIN),
    ("POST", "/users", {"username": "u", "password": "long enough", "role": "trainer"}, ADMIN),
    ("POST", "/users/99/disable", None, ADMIN),
    ("GET", "/audit", None, ADMIN),
    ("GET", "/auth/whoami", None, EVERYONE),
    ("GET", "/review/status", None, POOL),
    ("GET", "/review/annotators", None, POOL),
    ("GET", "/review/agreement", None, POOL),
    ("POST", "/review/push", {"kind": "attributes"}, BUILD),
    ("POST", "/review/sync", {"full": False}, BUILD),
    ("GET", "/ui/jobs", None, POOL),
    ("GET", "/ui/images", None, POOL),
    ("GET", "/ui/images/1", None, POOL),
    ("GET", "/ui/review", None, POOL),
    ("GET", "/ui/flywheel", None, POOL),
    ("GET", "/ui/releases", None, RELEASES),
    ("GET", "/ui/admin", None, ADMIN),
    ("GET", "/ui/audit", None, ADMIN),
    ("POST", "/ui/jobs", {"form": {"kind": "export"}}, BUILD),
    ("POST", "/ui/jobs", {"form": {"kind": "ingest", "source_id": "999"}}, BUILD),
    ("POST", "/ui/jobs/1/cancel", {"form": {}}, BUILD),
    ("POST", "/ui/images/1/takedown", {"form": {"reason": "asked"}}, ADMIN),
    ("POST", "/ui/admin/keys", {"form": {"name": "k", "role": "admin"}}, ADMIN),
]
# the Label Studio webhook authenticates by shared secret, media links by their signature
PUBLIC = {
    "/review/webhook",
    "/review/media/{person_id}",
    "/health",
    "/ready",
    "/version",
    "/login",
    "/",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


class QueueOnlyExecutor(Executor):
    """Queues without running, like the service profile's API process (authorisation is what is tested here)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from annotate_anyone.home.setup import init_home

    settings = Settings(home=tmp_path_factory.mktemp("roles") / "home", workers=1)
    init_home(settings)
    with session_scope(settings.db_url) as session:
        keys = {role: auth.create_api_key(session, name=role, role=role)[1] for role in ROLES}
    app = create_app(settings)
    app.state.executor = QueueOnlyExecutor(settings)
    app.state.auth_config = auth.AuthConfig(key_burst=10_000, key_per_second=10_000)
    return TestClient(app), keys


def _call(client: TestClient, method: str, path: str, body: dict | None, headers: dict[str, str]):
    if body is not None and "form" in body:
        return client.request(method, path, data=body["form"], headers=headers, follow_redirects=False)
    return client.request(method, path, json=body, headers=headers, follow_redirects=False)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_role_against_route(world, role: str, method: str, path: str, body: dict | None, allowed: set[str]) -> None:
    client, keys = world
    response = _call(client, method, path, body, {"Authorization": f"Bearer {keys[role]}"})
    if role in allowed:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
    else:
        assert response.status_code == 403, response.text
        if not path.startswith("/ui"):
            assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_no_credentials(world, method: str, path: str, body: dict | None, allowed: set[str]) -> None:
    client, _ = world
    response = _call(client, method, path, body, {})
    if path.startswith("/ui"):
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    else:
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def _depends_on_auth(dependant) -> bool:
    return any(d.call is current_principal or _depends_on_auth(d) for d in dependant.dependencies)


def test_every_route_but_the_public_ones_authenticates(world) -> None:
    client, _ = world
    unprotected = [r.path for r in client.app.routes if isinstance(r, APIRoute) and not _depends_on_auth(r.dependant)]
    assert set(unprotected) <= PUBLIC, unprotected
    covered = {p.split("?")[0] for _, p, _, _ in ROUTES}
    assert len(covered) >= 30
