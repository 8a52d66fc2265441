"""Settling answers with Dawid-Skene (the ``dawid_skene`` aggregation) on a known annotator-noise simulation."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState, Image, Person
from annotate_anyone.db.base import session_scope
from annotate_anyone.db.migrate import upgrade
from annotate_anyone.review.models import ReviewAnswer, ReviewProject
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.review.sync import Applier
from annotate_anyone.storage.local import LocalStore

COLOURS = ["black", "navy", "red", "white", "green"]
ANNOTATORS = ("careful", "cb1", "cb2")


def answer(rng: random.Random, who: str, truth: str) -> str:
    """One careful annotator (85% right); two who call black "navy" 80% of the time (else 95% right)."""
    others = [c for c in COLOURS if c != truth]
    if who == "careful":
        return truth if rng.random() < 0.85 else rng.choice(others)
    if truth == "black" and rng.random() < 0.8:
        return "navy"
    return truth if rng.random() < 0.95 else rng.choice(others)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[int, str]]:
    """100 gold tasks and 300 tasks (one person each), every one answered by the three annotators."""
    url = f"sqlite:///{tmp_path_factory.mktemp('settle') / 'aa.db'}"
    upgrade(url)
    rng = random.Random(7)
    truth: dict[int, str] = {}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope(url) as s:
        project = ReviewProject(kind="attributes", taxonomy_version="1", external_id="1", title="t", config_hash="x")
        s.add(project)
        s.flush()
        for n in range(400):
            gold = n < 100
            value = rng.choices(COLOURS, weights=[3, 1, 2, 2, 2])[0]
            person_id = None
            if not gold:
                image = Image(sha256=f"{n:064x}", source_uri=f"syn-{n}", storage_key=f"k{n}", width=64, height=128)
                s.add(image)
                s.flush()
                person = Person(image_id=image.id, index=0, box=[0, 0, 64, 128])
                s.add(person)
                s.flush()
                person_id = person.id
                truth[person_id] = value
            payload = {"attributes": [{"category": "6.color"}], **({"truth": {"6.color": value}} if gold else {})}
            task = ReviewTask(person_id=person_id, kind="attributes", status="pushed", payload=payload, is_gold=gold)
            s.add(task)
            s.flush()
            for who in ANNOTATORS:
                said = answer(rng, who, value)
                s.add(ReviewAnswer(project_id=project.id, task_id=task.id, external_id=f"{n}-{who}", annotator=who,
                                   choices={"6.color": said}, answered_at=now, revision="1", is_gold=gold,
                                   gold_total=int(gold), gold_correct=int(gold and said == value)))  # fmt: skip
    return url, truth


def settled_accuracy(url: str, truth: dict[int, str], aggregation: str, tmp_path: object) -> float:
    applier = Applier(load_taxonomy(), LocalStore(str(tmp_path)), ReviewConfig(aggregation=aggregation))
    with session_scope(url) as s:
        applier.refresh_reliability(s)
        for task in s.scalars(select(ReviewTask).where(ReviewTask.is_gold.is_(False))):
            applier.settle(s, task)
    with session_scope(url) as s:
        verified = {
            a.person_id: a.value
            for a in s.scalars(
                select(Attribute).where(
                    Attribute.origin == AttributeOrigin.human, Attribute.state == AttributeState.human_verified
                )
            )
        }
    assert set(verified) == set(truth)
    return sum(verified[p] == t for p, t in truth.items()) / len(truth)


def test_settling_with_dawid_skene_beats_majority_on_a_systematic_confusion(crowd, tmp_path) -> None:
    url, truth = crowd
    majority = settled_accuracy(url, truth, "majority", tmp_path)
    ds = settled_accuracy(url, truth, "dawid_skene", tmp_path)
    assert ds > 0.9 and ds > majority + 0.08, (ds, majority)
    assert settled_accuracy(url, truth, "majority", tmp_path) == majority  # settling again is a recomputation
