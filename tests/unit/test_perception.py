"""Shot types from keypoints, the backend registry, and the DETR detector on a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from annotate_anyone.errors import ConfigError
from annotate_anyone.perception import person_backend
from annotate_anyone.perception.shot_type import SHOT_TYPES, shot_type, truncation
from annotate_anyone.pipeline.humans import HumanFilter
from annotate_anyone.pipeline.record import Record


def keypoints(visible: set[int], width: int = 400, height: int = 400) -> np.ndarray:
    kp = np.zeros((33, 3), dtype=np.float32)
    kp[:, 0] = width / 2
    kp[:, 1] = np.linspace(10, height - 10, 33)
    kp[:, 2] = [0.95 if i in visible else 0.05 for i in range(33)]
    return kp


HEAD = set(range(11))


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (HEAD | {11, 12, 23, 24, 25, 26, 27, 28}, "full_body"),
        (HEAD | {11, 12, 23, 24, 25, 26}, "nearly_full_body"),
        (HEAD | {11, 12, 23, 24}, "upper_body"),
        (HEAD | {11, 12, 13, 14}, "upper_body"),
        (HEAD | {11, 12}, "portrait"),
        (HEAD, "headshot"),
    ],
)
def test_shot_type_from_visible_keypoints(visible, expected):
    assert shot_type(keypoints(visible), 400, 400) == expected
    assert expected in SHOT_TYPES


def test_big_face_is_a_headshot_and_out_of_frame_points_do_not_count():
    kp = keypoints(HEAD | {11, 12, 23, 24, 25, 26, 27, 28})
    assert shot_type(kp, 400, 400, face_boxes=[(100, 0, 300, 220)]) == "headshot"
    kp[25:, 1] = 450  # knees and feet predicted below the frame
    assert shot_type(kp, 400, 400) == "upper_body"


def test_truncation():
    assert truncation(keypoints(HEAD | {11, 12}), 400, 400) is None
    assert truncation(keypoints({11, 12, 23, 24}), 400, 400) == "head not in frame"
    cut = keypoints(HEAD | {11, 12})
    cut[12, 0] = -30  # one shoulder beyond the left edge
    assert truncation(cut, 400, 400) == "body cut at the side of the frame"


def test_unknown_backend_name():
    with pytest.raises(ConfigError):
        person_backend("yolo")


@pytest.fixture(scope="module")
def tiny_detr(tmp_path_factory) -> Path:
    """A randomly initialised DETR (tiny ResNet backbone, no timm, no hub) saved to a folder."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    backbone = transformers.ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        out_features=["stage2"],
    )
    config = transformers.DetrConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=8,
        id2label={0: "person", 1: "dog"},
        label2id={"person": 0, "dog": 1},
    )
    folder = tmp_path_factory.mktemp("tiny-detr")
    torch.manual_seed(0)  # a random model's queries share one class bias: unseeded, 'person' wins only by chance
    transformers.DetrForObjectDetection(config).save_pretrained(folder)
    processor_class = getattr(transformers, "DetrImageProcessorPil", transformers.DetrImageProcessor)  # no torchvision
    processor = processor_class(size={"shortest_edge": 64, "longest_edge": 128})
    processor.save_pretrained(folder)
    return folder


def test_detr_detector_returns_person_boxes(tiny_detr):
    from annotate_anyone.perception.detector import DetrPersonDetector

    detector = DetrPersonDetector(tiny_detr, score_threshold=0.0)
    image = Image.fromarray(skimage.data.astronaut()).resize((300, 200))
    found = detector.detect(image)
    assert found, "threshold 0 keeps every person query"
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for x0, y0, x1, y1 in (b for b, _ in found):
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200


def test_detr_backend_through_the_filter(tiny_detr):
    from annotate_anyone.perception.detector import DetectorPersonBackend, DetrPersonDetector

    backend = DetectorPersonBackend(DetrPersonDetector(tiny_detr, score_threshold=0.0))
    record = Record(item_id=1, uri="x", width=512, height=512, image=Image.fromarray(skimage.data.astronaut()))
    HumanFilter(backend).process_batch([record])
    assert record.drop_reason is None or record.drop_reason.startswith("humans:")
    assert record.drop_reason != "humans:error"
    strict = HumanFilter(f"detr:{tiny_detr}")  # default threshold 0.7: a random model finds nobody
    strict.check_requirements()
    record = Record(item_id=2, uri="y", width=512, height=512, image=Image.fromarray(skimage.data.astronaut()))
    strict.process_batch([record])
    assert record.drop_reason == "humans:none"


def test_detr_checkpoint_errors(tmp_path):
    from annotate_anyone.perception.detector import DetrPersonDetector

    with pytest.raises(ConfigError):
        DetrPersonDetector(tmp_path)


# --- the offline default: MediaPipe Tasks multi-person pose, bundled from the mediapipe wheel -------------

COCO = Path(__file__).parents[1] / "data" / "people-coco"


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    pytest.importorskip("mediapipe")
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tasks_backend(model_cache):
    from annotate_anyone.perception.pose_tasks import PoseTasksBackend

    return PoseTasksBackend(cache_dir=model_cache)


def test_bundle_built_once_into_the_cache_and_reused(model_cache, tmp_path):
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    from annotate_anyone.perception.pose_tasks import pose_bundle

    path = pose_bundle(model_cache)
    assert path.parent == model_cache and path.suffix == ".task"
    with zipfile.ZipFile(path) as bundle:
        assert sorted(bundle.namelist()) == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
    built = path.stat()
    assert pose_bundle(model_cache) == path
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == (built.st_mtime_ns, built.st_ino)  # reused, not rebuilt

    fresh = tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:  # two builders at once: both finish, one whole bundle, no temp files
        paths = set(pool.map(pose_bundle, [fresh, fresh]))
    assert paths == {fresh / path.name} and [p.name for p in fresh.iterdir()] == [path.name]
    (fresh / path.name).write_bytes(b"half a bundle")  # a damaged file is rebuilt, not loaded
    with zipfile.ZipFile(pose_bundle(fresh)) as bundle:
        assert len(bundle.namelist()) == 2
    with pytest.raises(ConfigError, match="AA_MODEL_CACHE"):  # an unusable cache says which setting to change
        pose_bundle(fresh / path.name / "models")


def test_default_backend_names():
    pytest.importorskip("mediapipe")
    from annotate_anyone.perception.mediapipe import MediaPipeBackend
    from annotate_anyone.perception.pose_tasks import PoseTasksBackend

    assert isinstance(person_backend(), PoseTasksBackend)
    assert isinstance(person_backend("mediapipe-legacy"), MediaPipeBackend)


def test_tasks_backend_finds_each_person_of_a_group(tasks_backend):
    image = Image.open(COCO / "COCO_val2014_000000000536.jpg").convert("RGB")  # three women side by side
    scene = tasks_backend.detect(image)
    assert len(scene.persons) == 3
    heights = [p.height for p in scene.persons]
    assert heights == sorted(heights, reverse=True)  # most prominent first
    centres = sorted((p.box[0] + p.box[2]) / 2 for p in scene.persons)
    assert min(b - a for a, b in zip(centres, centres[1:], strict=False)) > 0.15 * image.width  # three places
    owned = [b for p in scene.persons for b in p.face_boxes]
    assert len(owned) == len(set(owned)) <= len(scene.faces)  # each face given to one person at most
    for person in scene.persons:
        x0, y0, x1, y1 = person.box
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        assert person.keypoints.shape == (33, 3) and 0 < person.score <= 1
        assert person.mask.shape == (image.height, image.width) and person.mask.dtype == np.uint8
        assert set(np.unique(person.mask)) <= {0, 255} and (person.mask > 0).mean() > 0.02


def test_tasks_backend_works_on_a_downscaled_copy_and_answers_in_original_pixels(model_cache):
    from annotate_anyone.perception.pose_tasks import PoseTasksBackend

    photo = Image.fromarray(skimage.data.astronaut())
    big = photo.resize((1536, 1536), Image.Resampling.BICUBIC)
    small_scene = PoseTasksBackend(cache_dir=model_cache, max_side=512).detect(photo)
    big_scene = PoseTasksBackend(cache_dir=model_cache, max_side=512).detect(big)
    (small,), (large,) = small_scene.persons, big_scene.persons
    assert large.mask.shape == (1536, 1536)
    assert np.allclose(np.array(large.box) / 3, small.box, atol=16)  # same person, scaled back by 3
    assert np.median(np.abs(large.keypoints[:, :2] / 3 - small.keypoints[:, :2])) < 8
    assert abs((large.mask > 0).mean() - (small.mask > 0).mean()) < 0.02


def test_duplicate_poses_of_one_person_are_merged(tasks_backend):
    import copy

    from annotate_anyone.perception.pose_tasks import _dedup

    (person,) = tasks_backend.detect(Image.fromarray(skimage.data.astronaut())).persons
    again = copy.deepcopy(person)
    again.keypoints[:, :2] += 3  # the detector's second box around the same person
    again.score -= 0.01
    beside = copy.deepcopy(person)
    shift = person.box[2] - person.box[0] + 10
    beside.keypoints[:, 0] += shift  # a look-alike standing next to them
    beside.box = (person.box[0] + shift, person.box[1], person.box[2] + shift, person.box[3])
    beside.mask = None
    assert _dedup([again, person]) == [person]
    assert len(_dedup([person, again, beside])) == 2
