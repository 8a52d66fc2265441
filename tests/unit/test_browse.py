"""The image list through the API: filters, totals, paging and the ``expand=persons`` detail."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from annotate_anyone.access.auth import create_api_key
from annotate_anyone.api.app import create_app
from annotate_anyone.catalog.models import Attribute, Image, ImageStatus, Person, Source
from annotate_anyone.db.base import session_scope
from annotate_anyone.settings import Settings

SHOTS = ("full_body", "upper_body", "portrait")
HAIR = ("black", "brown", "blonde")


def _seed(settings: Settings, n: int = 60, seed: int = 3) -> list[dict]:
    """``n`` images (3 in 4 kept, each kept one with 1-2 persons and a hair colour); returns what was written."""
    rng = random.Random(seed)
    written = []
    with session_scope(settings.db_url) as session:
        source = Source(name="s", kind="folder", uri="/x")
        session.add(source)
        session.flush()
        for i in range(n):
            kept = i % 4 != 0
            image = Image(
                sha256=f"{i:064x}",
                source_id=source.id,
                source_uri=f"/x/{i}.jpg",
                storage_key=f"originals/{i}",
                width=640,
                height=480,
                status=ImageStatus.kept if kept else ImageStatus.dropped,
                drop_reason=None if kept else rng.choice(("quality:blur", "humans:none")),
            )
            session.add(image)
            session.flush()
            persons = []
            for index in range(rng.choice((1, 2)) if kept else 0):
                person = Person(image_id=image.id, index=index, box=[0, 0, 10, 20], shot_type=rng.choice(SHOTS))
                person.attributes.append(
                    Attribute(group=3, key="hair color", value=rng.choice(HAIR), confidence=0.9, taxonomy_version="t")
                )
                session.add(person)
                persons.append({"shot": person.shot_type, "hair": person.attributes[0].value})
            written.append(
                {"id": image.id, "status": image.status.value, "reason": image.drop_reason, "persons": persons}
            )
    return written


def _client(settings: Settings) -> TestClient:
    with session_scope(settings.db_url) as session:
        _key, raw = create_api_key(session, name="browse", role="engineer")
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {raw}"})


def _all_pages(client: TestClient, limit: int = 7, **params: str) -> tuple[list[dict], list[dict]]:
    items, pages, offset = [], [], 0
    while True:
        page = client.get("/images", params={**params, "limit": limit, "offset": offset}).json()
        pages.append(page)
        items += page["items"]
        if not page["has_more"]:
            return items, pages
        offset += limit


def test_filters_page_through_every_match_newest_first(embedded: Settings) -> None:
    written = _seed(embedded)
    client = _client(embedded)
    cases = {
        (): lambda w: True,
        (("status", "kept"),): lambda w: w["status"] == "kept",
        (("status", "dropped"), ("drop_reason", "quality:blur")): lambda w: w["reason"] == "quality:blur",
        (("shot_type", "portrait"),): lambda w: any(p["shot"] == "portrait" for p in w["persons"]),
        (("attribute", "hair color=blonde"),): lambda w: any(p["hair"] == "blonde" for p in w["persons"]),
        (("attribute", "hair color"),): lambda w: bool(w["persons"]),
        (("status", "kept"), ("shot_type", "full_body"), ("attribute", "hair color=black")): lambda w: (
            any(p["shot"] == "full_body" for p in w["persons"]) and any(p["hair"] == "black" for p in w["persons"])
        ),
    }
    for params, matches in cases.items():
        expected = sorted((w["id"] for w in written if matches(w)), reverse=True)
        assert expected, params
        items, pages = _all_pages(client, **dict(params))
        assert [i["id"] for i in items] == expected, params
        looks_through_persons = any(k in ("shot_type", "attribute") for k, _ in params)
        for page in pages:
            assert page["total"] == (None if looks_through_persons else len(expected)), params
        assert [p["has_more"] for p in pages] == [True] * (len(pages) - 1) + [False]


def test_rows_carry_counts_and_expand_adds_persons(embedded: Settings) -> None:
    written = {w["id"]: w for w in _seed(embedded, n=12)}
    client = _client(embedded)
    plain = client.get("/images", params={"limit": 12}).json()["items"]
    for row in plain:
        persons = written[row["id"]]["persons"]
        assert row["persons"] is None
        assert row["person_count"] == len(persons)
        assert row["shot_types"] == sorted({p["shot"] for p in persons})
    expanded = client.get("/images", params={"limit": 12, "expand": "persons"}).json()["items"]
    assert [r["id"] for r in expanded] == [r["id"] for r in plain]
    for row in expanded:
        persons = written[row["id"]]["persons"]
        assert [p["index"] for p in row["persons"]] == list(range(len(persons)))
        assert [p["attributes"][0]["value"] for p in row["persons"]] == [p["hair"] for p in persons]
        assert row["persons"] == client.get(f"/images/{row['id']}").json()["persons"]


def test_bad_list_parameters_get_a_clear_422(embedded: Settings) -> None:
    client = _client(embedded)
    for params, code in (
        ({"attribute": "=black"}, 422),
        ({"expand": "everything"}, 422),
        ({"status": "lost"}, 422),
        ({"limit": 0}, 422),
    ):
        response = client.get("/images", params=params)
        assert response.status_code == code, (params, response.text)
        body = response.json()
        assert {"error", "detail"} <= set(body) <= {"error", "detail", "fields"}, body
        for field in body.get("fields", []):  # request validation: where each problem is
            assert field["loc"][0] == "query" and field["msg"], field
