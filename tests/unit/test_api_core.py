"""The HTTP API on the embedded profile: health, sources, jobs with progress, images, error bodies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from annotate_anyone.api.app import create_app
from annotate_anyone.settings import Settings


def _client(settings: Settings, role: str = "admin") -> TestClient:
    from annotate_anyone.access.auth import create_api_key
    from annotate_anyone.db.base import session_scope

    with session_scope(settings.db_url) as session:
        _key, raw = create_api_key(session, name=f"test-{role}", role=role)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {raw}"})


def test_requests_without_a_key_are_refused(embedded: Settings) -> None:
    response = TestClient(create_app(embedded)).get("/jobs")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_release_file_names_with_a_newline_still_need_a_key(embedded: Settings) -> None:
    anonymous = TestClient(create_app(embedded))
    assert anonymous.get("/releases/1/files/%0Ax").status_code == 401  # was a 404 from no matching route
    assert _client(embedded).get("/releases/1/files/%0Ax").status_code == 404  # authorised: no such release


def test_health_and_version(embedded: Settings) -> None:
    client = _client(embedded)
    assert TestClient(create_app(embedded)).get("/health").json()["status"] == "ok"
    assert client.get("/version").json()["version"]


def test_errors_have_one_shape(embedded: Settings) -> None:
    client = _client(embedded)
    missing = client.get("/jobs/999")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "no job 999"}
    bad = client.post("/sources", json={"name": "", "kind": "nope", "uri": "x"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"
    client.post("/sources", json={"name": "a", "kind": "s3_prefix", "uri": "s3://bucket/a/"})
    dup = client.post("/sources", json={"name": "a", "kind": "s3_prefix", "uri": "s3://bucket/a/"})
    assert dup.status_code == 409 and dup.json()["error"] == "conflict"


def test_ingest_job_through_the_api(embedded: Settings, tmp_path: Path, make_jpeg: Callable[..., bytes]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(make_jpeg(i))
    client = _client(embedded.model_copy(update={"source_roots": [tmp_path]}))  # admins register under a root
    source = client.post("/sources", json={"name": "s", "kind": "folder", "uri": str(folder)}).json()
    job = client.post(
        "/jobs",
        json={
            "kind": "ingest",
            "params": {"source_ids": [source["id"]], "stages": ["read", "decode", "seen", "store"]},
        },
    )
    assert job.status_code == 202
    job_id = job.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert body["status"] == "succeeded", body
    assert body["progress"] == 1.0 and body["done"] == 3
    images = client.get("/images", params={"status": "kept", "limit": 2}).json()
    assert images["total"] == 3 and len(images["items"]) == 2
    first = images["items"][0]
    original = client.get(f"/images/{first['id']}/original")
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    import hashlib

    assert hashlib.sha256(original.content).hexdigest() == first["sha256"]
    funnel = client.get(f"/sources/{source['id']}/funnel").json()
    assert funnel["steps"]["kept"] == 3
