"""Every list of the API has one page shape, pages by offset or by keyset (`after_id`), and validation errors
name each offending field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from annotate_anyone.access import audit, auth
from annotate_anyone.api.app import create_app
from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs import create_job
from annotate_anyone.settings import Settings

PAGE_KEYS = {"items", "total", "limit", "offset", "has_more", "next_after_id"}
LISTS = ["/jobs", "/releases", "/keys", "/users", "/audit", "/sources", "/images"]


@pytest.fixture
def client(embedded: Settings) -> TestClient:
    with session_scope(embedded.db_url) as session:
        _key, raw = auth.create_api_key(session, name="pages-admin", role="admin")
    return TestClient(create_app(embedded), headers={"Authorization": f"Bearer {raw}"})


def _jobs(settings: Settings, kinds: list[str]) -> list[int]:
    with session_scope(settings.db_url) as session:
        return [create_job(session, kind=kind, params={}, created_by="test").id for kind in kinds]


@pytest.mark.parametrize("path", LISTS)
def test_every_list_is_a_page(client: TestClient, path: str) -> None:
    body = client.get(path, params={"limit": 3}).json()
    assert set(body) == PAGE_KEYS, body
    assert body["limit"] == 3 and body["offset"] == 0 and len(body["items"]) <= 3
    assert body["has_more"] == (body["next_after_id"] is not None)


def test_keyset_pages_walk_every_row_once_even_when_rows_arrive(client: TestClient, embedded: Settings) -> None:
    ids = _jobs(embedded, ["export", "ingest", "export", "export", "ingest"])
    seen: list[int] = []
    params: dict[str, int | str] = {"limit": 2}
    while True:
        body = client.get("/jobs", params=params).json()
        assert body["total"] == (5 if not seen else 6)  # what the filters match, not what is left to page
        seen += [job["id"] for job in body["items"]]
        if not seen[2:]:  # after the first page a new job arrives: keyset pages neither repeat nor skip
            _jobs(embedded, ["annotate"])
        if not body["has_more"]:
            assert body["next_after_id"] is None
            break
        assert body["next_after_id"] == body["items"][-1]["id"]
        params = {"limit": 2, "after_id": body["next_after_id"]}
    assert seen == sorted(ids, reverse=True)
    offset_page = client.get("/jobs", params={"limit": 2, "offset": 2}).json()  # offset paging shifted by one
    assert [job["id"] for job in offset_page["items"]] == [ids[3], ids[2]]
    exports = client.get("/jobs", params={"kind": "export", "after_id": ids[3]}).json()
    assert [job["id"] for job in exports["items"]] == [ids[2], ids[0]] and exports["total"] == 3
    assert client.get("/jobs", params={"status": "interrupted"}).json()["total"] == 0


def test_admin_lists_page_and_filter(client: TestClient, embedded: Settings) -> None:
    with session_scope(embedded.db_url) as session:
        for name in ("ann", "bob", "cyd"):
            auth.create_user(session, username=name, password="long-enough-1", role="annotator")
        revoked, _raw = auth.create_api_key(session, name="old", role="trainer")
        auth.revoke_api_key(session, revoked.id)
        for i in range(3):
            audit.record(session, principal=None, actor="test", action="thing.done", target_type="x", target_id=i)
    users = client.get("/users", params={"limit": 2}).json()
    assert [u["username"] for u in users["items"]] == ["ann", "bob"] and users["total"] == 3  # oldest first
    rest = client.get("/users", params={"after_id": users["next_after_id"]}).json()
    assert [u["username"] for u in rest["items"]] == ["cyd"] and not rest["has_more"]
    keys = client.get("/keys").json()
    assert [k["name"] for k in keys["items"]] == ["old", "pages-admin"] and keys["total"] == 2
    live = client.get("/keys", params={"revoked": False}).json()
    assert [k["name"] for k in live["items"]] == ["pages-admin"] and live["total"] == 1
    events = client.get("/audit", params={"action": "thing.done", "limit": 2}).json()
    assert [e["target_id"] for e in events["items"]] == ["2", "1"] and events["total"] == 3
    last = client.get("/audit", params={"action": "thing.done", "after_id": events["next_after_id"]}).json()
    assert [e["target_id"] for e in last["items"]] == ["0"]


def test_validation_errors_keep_each_field_location(client: TestClient) -> None:
    bad = client.get("/jobs", params={"limit": 0, "after_id": -1})
    assert bad.status_code == 422
    body = bad.json()
    assert body["error"] == "invalid_request" and "limit" in body["detail"]
    assert sorted(tuple(f["loc"]) for f in body["fields"]) == [("query", "after_id"), ("query", "limit")]
    assert all(f["msg"] and f["type"] for f in body["fields"])
    posted = client.post("/sources", json={"name": "", "kind": "nope", "uri": "x"}).json()
    assert {tuple(f["loc"]) for f in posted["fields"]} == {("body", "name"), ("body", "kind")}
    missing = client.get("/jobs/999").json()
    assert missing == {"error": "not_found", "detail": "no job 999"}  # other errors keep their two keys


def test_images_page_by_keyset_with_filters_and_the_same_total(client: TestClient, embedded: Settings) -> None:
    from annotate_anyone.catalog.models import Image, ImageStatus

    with session_scope(embedded.db_url) as session:
        rows = [
            Image(sha256=f"{i:064x}", source_uri=f"/{i}.jpg", storage_key="", width=9, height=9, status=status)
            for i, status in enumerate([ImageStatus.kept, ImageStatus.dropped] * 3)
        ]
        session.add_all(rows)
        session.flush()
        kept = sorted((r.id for r in rows if r.status == ImageStatus.kept), reverse=True)
    first = client.get("/images", params={"status": "kept", "limit": 2}).json()
    assert [i["id"] for i in first["items"]] == kept[:2] and first["total"] == 3
    rest = client.get("/images", params={"status": "kept", "limit": 2, "after_id": first["next_after_id"]}).json()
    assert [i["id"] for i in rest["items"]] == kept[2:] and rest["total"] == 3 and not rest["has_more"]
    assert rest["next_after_id"] is None
