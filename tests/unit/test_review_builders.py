"""Pre-filled tasks: brush layers through the SDK's RLE helpers round-trip; boxes round-trip."""

from __future__ import annotations

import numpy as np

from annotate_anyone.annotation.parsing import encode_map
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.db.models import Image, Person, ReviewTask
from annotate_anyone.review.builders import TaskBuilder, box_from_region, box_region, parsing_from_result
from annotate_anyone.review.engine import Routed
from annotate_anyone.storage import LocalStore

TAXONOMY = load_taxonomy()


def _person(store: LocalStore, label_map: np.ndarray) -> tuple[Person, Image]:
    h, w = label_map.shape
    image = Image(id=1, sha256="0" * 64, source_uri="x", storage_key="k", width=w, height=h)
    _, key = store.put_content(encode_map(label_map), prefix="parsing", ext="png")
    person = Person(id=5, image_id=1, index=0, box=[2, 3, 20, 30], score=0.8, parsing_key=key, parsing_model="p-1")
    return person, image


def test_parsing_prefill_round_trips_through_label_studio_rle(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    label_map = np.zeros((40, 24), dtype=np.uint8)
    label_map[2:10, 4:20] = 2  # hair
    label_map[10:25, 3:21] = 4  # upper-clothes
    label_map[25:38, 5:19] = 6  # pants
    person, image = _person(store, label_map)
    builder = TaskBuilder(TAXONOMY, store, lambda p, i: "http://x/img")
    out = builder.parsing(ReviewTask(id=9, kind="parsing", payload={}), person, image, overlap=1)
    prediction = out.predictions[0]
    assert prediction["model_version"] == "p-1"
    assert sorted(r["value"]["brushlabels"][0] for r in prediction["result"]) == ["hair", "pants", "upper-clothes"]
    assert np.array_equal(parsing_from_result(prediction["result"], TAXONOMY, 24, 40), label_map)


def test_attribute_task_asks_only_routed_attributes(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    person, image = _person(store, np.zeros((40, 24), dtype=np.uint8))
    builder = TaskBuilder(TAXONOMY, store, lambda p, i: "http://x/img")
    routed = [
        Routed(6, "color", "red", 0.4, {"red": 0.4, "blue": 0.3}, "m-1"),
        Routed(0, "age", "n/a", 0.3, {"n/a": 0.3}, "m-1"),
    ]
    out = builder.attributes(ReviewTask(id=3, kind="attributes", payload={}), person, image, routed, overlap=2)
    asked = [k for k, v in out.data.items() if k.endswith("_opts") and v]
    assert sorted(asked) == ["g0_age_opts", "g6_color_opts"]
    result = out.predictions[0]["result"]
    choices = {r["from_name"]: r for r in result if r["type"] == "choices"}
    assert choices["g6_color"]["score"] == 0.4 and choices["g0_age"]["value"]["choices"] == [
        "not visible / not applicable"
    ]
    assert out.predictions[0]["model_version"] == "m-1" and out.overlap == 2
    keys = [o.get("hotkey") for k in asked for o in out.data[k]]
    assert len(keys) == len(set(keys))


def test_box_round_trip() -> None:
    image = Image(width=200, height=100)
    person = Person(id=1, box=[10, 20, 110, 80])
    region = box_region(person, image)
    assert box_from_region(region["value"], 200, 100) == [10, 20, 110, 80]
