"""Helpers for the review tests: small factories for persons and routed tasks, real Label Studio annotators,
and our API on a loopback port (uvicorn in a thread)."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from PIL import Image as PILImage

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeState, Image, Person
from annotate_anyone.db.base import session_scope
from annotate_anyone.review import configs, question_layout
from annotate_anyone.storage import ObjectStore

CATEGORIES = [(6, "color"), (3, "hair_color"), (0, "age"), (8, "type"), (14, "overall_style")]


def jpeg(seed: int, size: tuple[int, int] = (64, 96)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@dataclass
class World:
    """What the factories made: routed tasks and, per person, the categories routed and the true values."""

    tasks: dict[int, int]  # review task id -> person id
    routed: dict[int, list[str]]  # person id -> category ids
    truth: dict[int, dict[str, str]]  # person id -> category -> value an honest annotator picks
    gold_truth: dict[int, dict[str, str]]  # gold template id -> truth


def make_world(db_url: str, store: ObjectStore, taxonomy: Taxonomy, n: int, n_gold: int = 0, seed: int = 0) -> World:
    """``n`` persons with 1-3 routed model labels each (and ``n_gold`` gold templates), as routing leaves them."""
    rng = np.random.default_rng(seed)
    world = World({}, {}, {}, {})
    with session_scope(db_url) as session:
        for i in range(n + n_gold):
            data = jpeg(seed * 10_000 + i)
            digest, key = store.put_content(data, ext="jpg")
            image = Image(sha256=digest, source_uri=f"test://{i}", storage_key=key, width=64, height=96, format="JPEG")
            person = Person(image=image, index=0, box=[4, 6, 60, 90], score=0.9)
            session.add_all([image, person])
            session.flush()
            k = 1 + i % 3
            chosen = CATEGORIES[i % len(CATEGORIES) :] + CATEGORIES[: i % len(CATEGORIES)]
            entries, truth = [], {}
            for group, key_ in chosen[:k]:
                options = taxonomy.options(group, key_)
                predicted = options[int(rng.integers(0, len(options)))]
                right = predicted if rng.random() < 0.5 else options[(options.index(predicted) + 1) % len(options)]
                attr = Attribute(
                    person_id=person.id,
                    group=group,
                    key=key_,
                    value=predicted,
                    confidence=float(rng.uniform(0.2, 0.6)),
                    distribution={predicted: 0.5, right: 0.3} if right != predicted else {predicted: 0.5},
                    model_version="offline-1",
                    taxonomy_version=taxonomy.version,
                    state=AttributeState.needs_review,
                )
                session.add(attr)
                session.flush()
                entries.append({"attribute_id": attr.id})
                truth[f"{group}.{key_}"] = right
            if i < n:
                task = ReviewTask(
                    person_id=person.id,
                    kind="attributes",
                    priority=float(rng.uniform(0, 1)),
                    payload={"taxonomy_version": taxonomy.version, "attributes": entries},
                )
                session.add(task)
                session.flush()
                world.tasks[task.id] = person.id
                world.routed[person.id] = list(truth)
                world.truth[person.id] = truth
            else:
                gold = ReviewTask(
                    person_id=person.id,
                    kind="attributes",
                    status="gold",
                    is_gold=True,
                    payload={"attributes": entries, "truth": truth},
                )
                session.add(gold)
                session.flush()
                world.gold_truth[gold.id] = truth
    return world


class Annotator:
    """A Label Studio user who signed up through the organisation's invite link and answers with their token."""

    def __init__(self, url: str, admin_token: str, email: str, password: str = "annotator-pass-123") -> None:
        self.url, self.email = url, email
        invite = httpx.get(f"{url}/api/invite", headers={"Authorization": f"Token {admin_token}"}).json()
        with httpx.Client(base_url=url) as web:
            web.get(invite["invite_url"])
            form = {"email": email, "password": password, "csrfmiddlewaretoken": web.cookies.get("csrftoken")}
            signup = web.post(invite["invite_url"], data=form, headers={"Referer": url + invite["invite_url"]})
            assert signup.status_code in (200, 302), signup.text[:300]
            self.token = web.get("/api/current-user/token").json()["token"]
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Token {self.token}"}, timeout=30)

    def next_task(self, project: str) -> dict[str, Any] | None:
        """The next task Label Studio's label stream gives this annotator (``None`` when done)."""
        response = self.http.get(f"/api/projects/{project}/next")
        return response.json() if response.status_code == 200 else None

    def answer(
        self, task: dict[str, Any], values: dict[str, str], taxonomy: Taxonomy, lead_time: float, parts: bool = True
    ) -> int:
        """Submit one value per asked category (``"6.color" -> value``), as the form sends it.

        With ``parts``, the parts checklist is answered the way an honest annotator would: a part is ticked
        when one of its given values says it is there (a part left out settles its questions as n/a).
        """
        result = []
        ticked: list[str] = []
        for category, value in values.items():
            group, key = category.split(".")
            label = question_layout.PART_LABELS.get(int(group))
            if label and not taxonomy.is_absent(int(group), key, value) and label not in ticked:
                ticked.append(label)
            result.append(_choice(configs.control_name(int(group), key), [configs.display_value(value, taxonomy)]))
        offered = [o["value"] for o in task["data"].get(configs.PARTS_OPTIONS) or []]
        if parts and offered:
            result.append(_choice(question_layout.PARTS, ticked or [question_layout.NONE_OF_THESE]))
        response = self.http.post(
            f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": lead_time}
        )
        assert response.status_code == 201, response.text[:300]
        return int(response.json()["id"])

    def delete(self, annotation_id: int) -> None:
        assert self.http.delete(f"/api/annotations/{annotation_id}/").status_code == 204


def _choice(name: str, values: list[str]) -> dict[str, Any]:
    return {"from_name": name, "to_name": configs.IMAGE, "type": "choices", "value": {"choices": values}}


def asked_categories(task: dict[str, Any], taxonomy: Taxonomy) -> list[str]:
    """The categories a backend task shows (non-empty option lists)."""
    return [c.id for c in taxonomy.categories() if task["data"].get(configs.options_field(c.group, c.key))]


class ApiServer:
    """Our FastAPI app on a loopback port, in a thread; ``stop()`` takes the webhook receiver away."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "API server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def wait_for(check: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``check()`` until true (a deadline for waiting on webhooks, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)
