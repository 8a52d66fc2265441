"""HumanFilter with the offline multi-person MediaPipe backend on real photos, and its rules on synthetic scenes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from annotate_anyone.perception.types import FaceDetection, PersonBackend, PersonDetection, SceneDetection
from annotate_anyone.pipeline.decode import DecodeStage
from annotate_anyone.pipeline.humans import HumanFilter
from annotate_anyone.pipeline.record import Record
from annotate_anyone.settings import Settings

pytest.importorskip("mediapipe")

COCO = Path(__file__).parents[1] / "data" / "people-coco"
CROWDS = ("000241", "000328", "000536")
SINGLES = ("000459", "000474", "000294")


@pytest.fixture(scope="module", autouse=True)
def _model_cache(tmp_path_factory):
    """The pose bundle is built into a temporary model cache, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AA_MODEL_CACHE", str(tmp_path_factory.mktemp("models")))
        yield


def _grace_hopper() -> bytes:
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


EXPECTED = {
    # name: (drop reason or None, allowed shot types when kept)
    "astronaut": (None, {"upper_body", "portrait"}),
    "camera": (None, {"nearly_full_body", "full_body", "upper_body"}),
    "grace_hopper": (None, {"portrait", "upper_body"}),
    "000459": (None, {"upper_body", "portrait"}),
    "000474": (None, {"full_body", "nearly_full_body"}),
    "000294": (None, {"upper_body", "portrait"}),
    "000241": ("humans:multiple", None),
    "000328": ("humans:multiple", None),
    "000536": ("humans:multiple", None),
    "000569": ("humans:too_small", None),
    "000589": ("humans:too_small", None),
}


@pytest.fixture(scope="module")
def judged() -> dict[str, Record]:
    sources = {
        "astronaut": _png(skimage.data.astronaut()),
        "camera": _png(skimage.data.camera()),
        "grace_hopper": _grace_hopper(),
    }
    for path in sorted(COCO.glob("*.jpg")):
        sources[path.stem[-6:]] = path.read_bytes()
    records = [Record(item_id=i, uri=name, data=data) for i, (name, data) in enumerate(sources.items())]
    DecodeStage(max_pixels=50_000_000).process_batch(records)
    HumanFilter("mediapipe", cache_dir=Settings().model_cache_dir).process_batch(records)
    return {r.uri: r for r in records}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_photo_outcomes(judged, name):
    record = judged[name]
    reason, shots = EXPECTED[name]
    assert record.drop_reason == reason, record.error
    if reason is None:
        (person,) = record.persons
        assert person["shot_type"] in shots
        x0, y0, x1, y1 = person["box"]
        assert 0 <= x0 < x1 <= record.width and 0 <= y0 < y1 <= record.height
        assert (y1 - y0) / record.height >= 0.4
        assert len(person["keypoints"]) == 33 and all(len(k) == 3 for k in person["keypoints"])
        assert 0 < person["score"] <= 1
        mask = Image.open(io.BytesIO(person["mask_png"]))
        assert mask.size == (record.width, record.height)
        assert 0.05 < np.asarray(mask.convert("L")).mean() / 255 < 0.95
    else:
        assert record.persons == [] and record.error


def test_people_are_counted(judged):
    for name in CROWDS:  # a group is judged on every person found, not one
        assert judged[name].metrics["persons_detected"] >= 2, name
    for name in SINGLES:  # a single is never lost as nobody
        assert judged[name].drop_reason != "humans:none" and judged[name].metrics["persons_detected"] >= 1
    assert all("persons_detected" in r.metrics for r in judged.values())


def test_legacy_backend_stays_reachable():
    from annotate_anyone.perception.mediapipe import MediaPipeBackend

    record = Record(item_id=1, uri="grace", data=_grace_hopper())
    DecodeStage(max_pixels=50_000_000).process_batch([record])
    stage = HumanFilter("mediapipe-legacy")
    stage.check_requirements()
    stage.process_batch([record])
    assert isinstance(stage._backend, MediaPipeBackend)
    assert record.drop_reason is None and record.persons[0]["backend"] == "mediapipe-legacy"


def test_faces_found_for_portraits(judged):
    for name in ("astronaut", "grace_hopper", "000459"):
        (person,) = judged[name].persons
        assert len(person["face_boxes"]) == 1
        fx0, fy0, fx1, fy1 = person["face_boxes"][0]
        x0, y0, x1, y1 = person["box"]
        assert x0 - 20 <= fx0 and fx1 <= x1 + 20 and y0 - 20 <= fy0  # the face lies on the person


def test_coordinates_scaled_to_original_pixels():
    """A draft-decoded large JPEG gives boxes and masks in the original pixel grid."""
    big = Image.fromarray(skimage.data.astronaut()).resize((2048, 2048))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    record = Record(item_id=1, uri="big", data=buf.getvalue())
    DecodeStage(max_pixels=50_000_000, draft_side=512).process_batch([record])
    assert record.image.size == (512, 512)
    HumanFilter("mediapipe", cache_dir=Settings().model_cache_dir).process_batch([record])
    (person,) = record.persons
    assert person["box"][3] > 1500 and max(k[0] for k in person["keypoints"]) > 512
    assert Image.open(io.BytesIO(person["mask_png"])).size == (2048, 2048)


class FixedScene(PersonBackend):
    """A backend that returns a prepared scene: isolates the filter's rules from any model."""

    name = "fixed"

    def __init__(self, scene: SceneDetection) -> None:
        self.scene = scene

    def detect(self, image: Image.Image) -> SceneDetection:
        return self.scene


def _standing(x: float, top: float, bottom: float, visibility: float = 0.9) -> np.ndarray:
    """33 keypoints of an upright person between ``top`` and ``bottom`` (head to feet)."""
    ys = np.linspace(top + 5, bottom - 5, 33)
    kp = np.stack([np.full(33, x), ys, np.full(33, visibility)], axis=1)
    kp[11, 0], kp[12, 0], kp[23, 0], kp[24, 0] = x - 20, x + 20, x - 15, x + 15
    return kp.astype(np.float32)


def _judge(scene: SceneDetection) -> Record:
    record = Record(item_id=1, uri="s", width=scene.width, height=scene.height, image=Image.new("RGB", (400, 400)))
    HumanFilter(FixedScene(scene)).process_batch([record])
    return record


def _person(top: float, bottom: float, x: float = 200, faces: bool = True) -> PersonDetection:
    face = [(x - 15, top, x + 15, top + 30)] if faces else []
    return PersonDetection(
        box=(x - 40, top, x + 40, bottom), score=0.9, keypoints=_standing(x, top, bottom), face_boxes=face
    )


def test_rules_on_synthetic_scenes():
    one = SceneDetection(400, 400, persons=[_person(20, 380)])
    assert _judge(one).drop_reason is None and _judge(one).persons[0]["shot_type"] == "full_body"
    assert _judge(SceneDetection(400, 400)).drop_reason == "humans:none"
    two = SceneDetection(400, 400, persons=[_person(20, 380, 100), _person(40, 330, 300)])
    assert _judge(two).drop_reason == "humans:multiple"
    background = SceneDetection(400, 400, persons=[_person(20, 380, 100), _person(300, 360, 300)])
    assert _judge(background).drop_reason is None  # a small person far behind is not a second subject
    faces = [FaceDetection((10, 10, 50, 50), 0.9), FaceDetection((200, 10, 235, 45), 0.9)]
    assert _judge(SceneDetection(400, 400, persons=[_person(20, 380)], faces=faces)).drop_reason == "humans:multiple"
    assert _judge(SceneDetection(400, 400, persons=[_person(250, 390)])).drop_reason == "humans:too_small"
    headless = _person(20, 380)
    headless.keypoints[:11, 2] = 0.1
    assert _judge(SceneDetection(400, 400, persons=[headless])).drop_reason == "humans:truncated"
    bust = _person(20, 380, faces=False)
    bust.keypoints[25:, 2] = 0.1  # no knees or feet: an upper-body framing, which needs a face
    assert _judge(SceneDetection(400, 400, persons=[bust])).drop_reason == "humans:no_face"


def test_unclear_and_background_people():
    faint = _person(20, 380)
    faint.keypoints[:, 2] = 0.3
    faint.keypoints[:5, 2] = 0.9  # five keypoints seen: a person found, but not clearly
    record = _judge(SceneDetection(400, 400, persons=[faint]))
    assert record.drop_reason == "humans:unclear" and record.metrics["persons_detected"] == 1
    tiny = [_person(300, 330, x) for x in (60, 120, 300)]  # a crowd far behind, each under a tenth of the height
    crowd_behind = SceneDetection(400, 400, persons=[_person(20, 380), *tiny])
    record = _judge(crowd_behind)
    assert record.drop_reason is None and record.metrics["persons_detected"] == 4
    faint_second = _person(40, 330, 300)
    faint_second.keypoints[:, 2] = 0.1  # a second tall pose without a seen keypoint is not a second person
    assert _judge(SceneDetection(400, 400, persons=[_person(20, 380, 100), faint_second])).drop_reason is None


def test_thresholds_come_from_settings(monkeypatch):
    from annotate_anyone.pipeline.build import build_stages
    from annotate_anyone.settings import Settings

    short = SceneDetection(400, 400, persons=[_person(250, 390)])  # 35% of the height
    second = _person(230, 380, 300, faces=False)  # 52% as tall as the main one, 38% of the image
    two = SceneDetection(400, 400, persons=[_person(90, 380, 100), second])
    cases = [
        ("MIN_HEIGHT_SHARE", "0.3", short, "humans:too_small"),
        ("SECOND_PERSON_RATIO", "0.6", two, "humans:multiple"),
    ]
    for name, value, scene, default_reason in cases:
        assert _judge(scene).drop_reason == default_reason
        monkeypatch.setenv(f"AA_HUMANS__{name}", value)
        (stage,) = build_stages(["humans"], Settings())
        assert getattr(stage, name.lower()) == float(value) and stage.backend_name == "mediapipe"
        stage._backend = FixedScene(scene)
        record = Record(item_id=1, uri="s", width=400, height=400, image=Image.new("RGB", (400, 400)))
        stage.process_batch([record])
        assert record.drop_reason is None, record.error
        monkeypatch.delenv(f"AA_HUMANS__{name}")
