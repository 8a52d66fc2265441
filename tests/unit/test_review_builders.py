"""Pre-filled tasks: presence-first attribute tasks with the model's scores, brush layers through the SDK's RLE
helpers, tight person boxes."""

from __future__ import annotations

import numpy as np

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.parsing import encode_map
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.catalog.models import Image, Person
from annotate_anyone.review import configs, question_layout
from annotate_anyone.review.builders import TaskBuilder, box_from_region, box_region, parsing_from_result, tight_box
from annotate_anyone.review.engine import Routed
from annotate_anyone.review.settings import ReviewConfig
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


def _asked(out) -> list[str]:
    return sorted(k for k, v in out.data.items() if k.endswith("_opts") and v)


def test_attribute_task_asks_routed_questions_presence_first_and_preselects_only_confident_answers(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    person, image = _person(store, np.zeros((40, 24), dtype=np.uint8))
    builder = TaskBuilder(TAXONOMY, store, lambda p, i: "http://x/img")
    routed = [
        Routed(6, "color", "red", 0.4, {"red": 0.4, "blue": 0.3, "navy": 0.1, "black": 0.05}, "m-1"),
        Routed(0, "age", "n/a", 0.95, {"n/a": 0.95}, "m-1"),
        Routed(5, "type", "n/a", 0.97, {"n/a": 0.97, "gown": 0.03}, "m-1"),
        Routed(9, "boots_length", None, None, {}, "m-2"),
    ]
    out = builder.attributes(ReviewTask(id=3, kind="attributes", payload={}), person, image, routed, overlap=2)
    # the routed questions, the shoe type boots height depends on, and the parts checklist
    assert _asked(out) == ["g0_age_opts", "g5_type_opts", "g6_color_opts", "g9_boots_length_opts", "g9_type_opts",
                           "parts_opts"]  # fmt: skip
    assert [o["value"] for o in out.data["parts_opts"]] == ["dress", "top", "shoes", question_layout.NONE_OF_THESE]
    assert "model 3%" in out.data["parts_opts"][0]["html"]  # the model's presence probability of the dress
    assert out.data["g6_color_q"] == TAXONOMY.attribute(6, "color").question and out.data["g1_body_shape_q"] == ""
    assert out.data["g6_head"] == "Top" and out.data["g7_head"] == ""
    color = {o["value"]: o.get("html", "") for o in out.data["g6_color_opts"]}
    assert "model 40%" in color["red"] and "model 30%" in color["blue"] and "model 10%" in color["navy"]
    assert "model" not in color["black"]  # the top three only
    prediction = out.predictions[0]
    choices = {r["from_name"]: r for r in prediction["result"] if r["type"] == "choices"}
    assert set(choices) == {"g0_age"}  # 0.95 >= 0.9; red at 0.4 is shown, not selected; nothing ticked
    assert choices["g0_age"]["value"]["choices"] == ["not visible / not applicable"]
    assert prediction["score"] == 0.0 and prediction["model_version"] == "m-1+m-2" and out.overlap == 2
    assert "lowest 0%" in out.data["aa_summary"] and "no model answer for 1" in out.data["aa_summary"]
    keys = [o.get("hotkey") for k in _asked(out) for o in out.data[k]]
    assert set(keys) == {None}  # far more options than keys: none rather than some ...
    sink = out.data[configs.KEY_SINK]  # ... and Label Studio's own auto keys all go to the hidden control
    assert sorted(o["hotkey"] for o in sink) == sorted(configs.LS_AUTO_KEYS)


def test_small_task_gets_a_hotkey_on_every_option_and_confident_parts_are_ticked(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    person, image = _person(store, np.zeros((40, 24), dtype=np.uint8))
    options = ReviewConfig(preselect_confidence=0.8)
    builder = TaskBuilder(TAXONOMY, store, lambda p, i: "http://x/img", options=options)
    routed = [Routed(12, "present", "yes", 0.85, {"yes": 0.85, "no": 0.15}, "m-1")]
    out = builder.attributes(ReviewTask(id=4, kind="attributes", payload={}), person, image, routed, overlap=1)
    assert _asked(out) == ["parts_opts"]
    keys = [o.get("hotkey") for o in out.data["parts_opts"]]
    assert None not in keys and len(set(keys)) == len(keys) == 2
    assert out.data[configs.KEY_SINK] == []
    ticked = [r for r in out.predictions[0]["result"] if r["from_name"] == question_layout.PARTS]
    assert ticked[0]["value"]["choices"] == ["belt"]
    assert "lowest 85%" in out.data["aa_summary"]


def test_tight_box_follows_the_mask_and_the_visible_keypoints() -> None:
    image = Image(width=200, height=100)
    person = Person(id=1, box=[0, 0, 200, 60], keypoints=[[90, 20, 0.9], [110, 95, 0.9], [5, 5, 0.1]])
    mask = np.zeros((50, 100), dtype=np.float32)  # half resolution
    mask[5:40, 40:60] = 1.0
    x0, y0, x1, y1 = tight_box(person, image, mask, pad=0.0)
    assert (x0, y0, x1, y1) == (80.0, 10.0, 120.0, 95.0)  # mask 80-120 x 10-80, the ankle at y=95
    assert tight_box(Person(id=2, box=[1, 2, 3, 4]), image, None) == [1.0, 2.0, 3.0, 4.0]


def test_box_round_trip() -> None:
    image = Image(width=200, height=100)
    person = Person(id=1, box=[10, 20, 110, 80])
    region = box_region(person, image)
    assert box_from_region(region["value"], 200, 100) == [10, 20, 110, 80]


def test_checklist_offers_partly_out_of_frame_for_parts_whose_end_is_asked(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    person, image = _person(store, np.zeros((40, 24), dtype=np.uint8))
    builder = TaskBuilder(TAXONOMY, store, lambda p, i: "http://x/img")
    routed = [Routed(8, "length", "long", 0.5, {"long": 0.5}, "m-1"), Routed(6, "color", "red", 0.5, {}, "m-1")]
    out = builder.attributes(ReviewTask(id=5, kind="attributes", payload={}), person, image, routed, overlap=1)
    offered = [o["value"] for o in out.data["parts_opts"]]
    assert offered == ["top", "bottoms", "bottoms (partly out of frame)", question_layout.NONE_OF_THESE]
