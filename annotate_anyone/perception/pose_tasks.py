"""Offline default person backend: MediaPipe Tasks ``PoseLandmarker``, several people per image.

Both models ship inside the mediapipe 0.10.14 wheel (``pose_detection.tflite`` finds people,
``pose_landmark_full.tflite`` gives 33 keypoints and a mask per person). Tasks reads the input
normalisation from model metadata, which the wheel's landmark model lacks, so at first use
:func:`pose_bundle` adds it with MediaPipe's own metadata writer and zips both models into a
``.task`` bundle in the model cache (built once per mediapipe version, atomically).

The detector sees the whole image at 224 px, so the backend runs on a copy downscaled to
``max_side`` and scales keypoints, boxes and masks back. Two extra looks cover what one pass misses,
each only when needed:

* a single person found who does not fill the frame: pose runs again on two overlapping strips
  along the long side (people at 224 px of a whole wide photo are small; a missed second person
  would keep a group photo as a single);
* a face (legacy face detection) that no pose explains: pose runs on a crop around it with a low
  detection threshold (a close face partly hidden by a hand or phone is often missed).

The detector can report one person twice: poses whose keypoints lie on top of each other are merged.
"""

from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from annotate_anyone.errors import ConfigError, MissingExtra
from annotate_anyone.perception.mediapipe import FaceFinder, _face_belongs, _person_box
from annotate_anyone.perception.types import (
    VISIBLE,
    Box,
    FaceDetection,
    PersonBackend,
    PersonDetection,
    SceneDetection,
    box_inside_share,
    box_iou,
    visible_in_frame,
)

WHEEL_MODELS = {  # bundle member -> path inside the mediapipe package
    "pose_detector.tflite": "modules/pose_detection/pose_detection.tflite",
    "pose_landmarks_detector.tflite": "modules/pose_landmark/pose_landmark_full.tflite",
}
LANDMARK_OUTPUTS = 5  # landmarks, pose flag, segmentation, heatmap, world landmarks
HEAD = slice(0, 11)  # nose, eyes, ears, mouth in MediaPipe's 33-point layout
MIN_KEYPOINTS = 8  # a pose with fewer visible in-frame keypoints is not a person
MIN_SEED_FACE = 0.04  # faces shorter than this share of the image height get no second look
MAX_SEEDS = 3
SEED_CONFIDENCE = 0.1  # detection threshold on a crop around a face (the face already says someone is there)
STRIP_SHARE = 0.6  # each second-look strip spans this share of the long side


def _mediapipe() -> Any:
    try:
        import mediapipe
    except ImportError as exc:
        raise MissingExtra("the MediaPipe person backend", "perception", "mediapipe==0.10.14") from exc
    return mediapipe


def _is_bundle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as bundle:
            return set(bundle.namelist()) == set(WHEEL_MODELS)
    except (OSError, zipfile.BadZipFile):
        return False


def pose_bundle(cache_dir: Path | None) -> Path:
    """The ``.task`` bundle built from the models inside the mediapipe wheel (built on first call).

    It lives in ``cache_dir`` (``Settings.model_cache_dir``, passed by the caller) under a name keyed by the
    mediapipe version. It is written to a temporary file and renamed into place, so concurrent
    builders never expose a partial bundle (the last rename wins; both wrote the same bytes).
    """
    if cache_dir is None:
        raise ConfigError("the MediaPipe pose backend needs a model cache folder (Settings.model_cache_dir)")
    mediapipe = _mediapipe()
    folder = Path(cache_dir).expanduser()
    path = folder / f"pose_landmarker_full-mediapipe-{mediapipe.__version__}.task"
    if _is_bundle(path):
        return path
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, model_asset_bundle_utils

    root = Path(mediapipe.__file__).parent
    models = {member: (root / rel).read_bytes() for member, rel in WHEEL_MODELS.items()}
    writer = metadata_writer.MetadataWriter.create(bytearray(models["pose_landmarks_detector.tflite"]))
    writer.add_general_info("pose_landmarks_detector", "BlazePose full landmarks (from the mediapipe wheel)")
    writer.add_image_input(norm_mean=[0.0], norm_std=[255.0])  # RGB 0..255 -> 0..1
    for _ in range(LANDMARK_OUTPUTS):
        writer.add_feature_output()
    model, _ = writer.populate()
    models["pose_landmarks_detector.tflite"] = bytes(model)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write the pose model bundle into {folder} ({exc}); set AA_MODEL_CACHE") from exc
    os.close(fd)
    try:
        model_asset_bundle_utils.create_model_asset_bundle(models, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class PoseTasksBackend(PersonBackend):
    """Multi-person pose (33 keypoints + mask per person) and faces, from models inside mediapipe 0.10.14."""

    name = "mediapipe-pose-tasks-0.10.14"

    def __init__(
        self,
        *,
        max_side: int = 512,
        max_poses: int = 20,
        detection_confidence: float = 0.3,
        presence_confidence: float = 0.3,
        face_confidence: float = 0.6,
        min_keypoints: int = MIN_KEYPOINTS,
        face_seeds: bool = True,
        second_look: tuple[float, float] | None = (0.4, 0.7),
        cache_dir: Path | None = None,
    ) -> None:
        """``second_look``: the band of height shares (of the image) of a lone person that triggers
        the strip pass (``None``: never; below 0.4 the human filter's default drops a lone person as
        too small anyway, above 0.7 a second prominent person is big enough for the first pass);
        ``face_seeds``: pose on crops around unexplained faces."""
        self.max_side = max_side
        self.max_poses = max_poses
        self.detection_confidence = detection_confidence
        self.presence_confidence = presence_confidence
        self.min_keypoints = min_keypoints
        self.face_seeds = face_seeds
        self.second_look = second_look
        self.cache_dir = cache_dir
        self._lock = threading.Lock()  # one graph per backend; calls are serialised
        self._mp: Any = None  # the mediapipe module, once loaded
        self._landmarker: Any = None
        self._seed_landmarker: Any = None
        self._faces = FaceFinder(face_confidence)

    def _create(self, confidence: float, presence: float, poses: int) -> Any:
        self._mp = _mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(pose_bundle(self.cache_dir))),
            running_mode=vision.RunningMode.IMAGE,
            num_poses=poses,
            min_pose_detection_confidence=confidence,
            min_pose_presence_confidence=presence,
            output_segmentation_masks=True,
        )
        return vision.PoseLandmarker.create_from_options(options)

    def detect(self, image: Image.Image) -> SceneDetection:
        rgb = image.convert("RGB")
        width, height = rgb.size
        scale = min(1.0, self.max_side / max(width, height))
        if scale < 1.0:
            rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
        pixels = np.ascontiguousarray(np.asarray(rgb))
        with self._lock:
            if self._landmarker is None:
                self._landmarker = self._create(self.detection_confidence, self.presence_confidence, self.max_poses)
            faces = self._faces.detect(pixels)
            persons = self._poses(self._landmarker, pixels)
            if self._needs_second_look(persons, pixels.shape[0]):
                persons = _dedup(persons + self._strips(pixels, persons[0]))
            if self.face_seeds:
                persons += self._seeded(pixels, persons, faces)
        persons = _dedup(persons)
        _attribute_faces(persons, faces)
        persons.sort(key=lambda p: p.height, reverse=True)
        scene = SceneDetection(width=width, height=height, persons=persons, faces=faces)
        if scale < 1.0:
            _rescale(scene, 1.0 / scale)
        return scene

    def _poses(
        self,
        landmarker: Any,
        pixels: np.ndarray,
        offset: tuple[int, int] = (0, 0),
        full: tuple[int, int] | None = None,
    ) -> list[PersonDetection]:
        """Persons found in ``pixels`` (a crop at ``offset`` of a ``full`` (w, h) image), in full-image pixels."""
        height, width = pixels.shape[:2]
        full_w, full_h = full or (width, height)
        result = landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=pixels))
        masks = result.segmentation_masks or []
        persons: list[PersonDetection] = []
        for i, landmarks in enumerate(result.pose_landmarks):
            keypoints = np.array([[lm.x * width, lm.y * height, lm.visibility] for lm in landmarks], dtype=np.float32)
            keypoints[:, 0] += offset[0]
            keypoints[:, 1] += offset[1]
            seen = visible_in_frame(keypoints, full_w, full_h)
            if seen.sum() < self.min_keypoints:
                continue
            mask = None
            if i < len(masks):
                crop = (masks[i].numpy_view() > 0.5).astype(np.uint8) * 255
                mask = np.zeros((full_h, full_w), dtype=np.uint8)
                mask[offset[1] : offset[1] + height, offset[0] : offset[0] + width] = crop
            box, mask = _person_box(keypoints[seen], mask, full_w, full_h)
            score = float(np.clip(keypoints[:, 2], 0, 1).mean())
            persons.append(PersonDetection(box=box, score=score, keypoints=keypoints, mask=mask))
        return persons

    def _seeded(
        self, pixels: np.ndarray, persons: list[PersonDetection], faces: list[FaceDetection]
    ) -> list[PersonDetection]:
        """Pose on a crop around each sizeable face that no found person explains."""
        height, width = pixels.shape[:2]
        found: list[PersonDetection] = []
        orphans = [
            f
            for f in faces
            if f.box[3] - f.box[1] >= MIN_SEED_FACE * height
            and not any(_head_in_face(p, f.box) or _face_belongs(f.box, p) for p in persons)
        ]
        for face in orphans[:MAX_SEEDS]:
            x0, y0, x1, y1 = face.box
            fw, fh = x1 - x0, y1 - y0
            cx = (x0 + x1) / 2
            left, top = int(max(0, cx - 3 * fw)), int(max(0, y0 - fh))
            right, bottom = int(min(width, cx + 3 * fw)), int(min(height, y1 + 7 * fh))
            if self._seed_landmarker is None:
                self._seed_landmarker = self._create(SEED_CONFIDENCE, SEED_CONFIDENCE, MAX_SEEDS)
            crop = np.ascontiguousarray(pixels[top:bottom, left:right])
            poses = self._poses(self._seed_landmarker, crop, (left, top), (width, height))
            owners = [p for p in poses if _head_in_face(p, face.box)]
            if owners:
                found.append(max(owners, key=lambda p: p.score))
        return found

    def _needs_second_look(self, persons: list[PersonDetection], height: int) -> bool:
        if self.second_look is None or len(persons) != 1:
            return False
        low, high = self.second_look
        return low <= persons[0].height / height < high

    def _strips(self, pixels: np.ndarray, seen: PersonDetection) -> list[PersonDetection]:
        """Pose on two overlapping strips along the long side (the whole short side each), with the
        person already ``seen`` painted over so that only new people cost a landmark pass."""
        height, width = pixels.shape[:2]
        if seen.mask is not None:
            pixels = _paint_over(pixels, seen.mask)
        found: list[PersonDetection] = []
        long_side = max(width, height)
        size = int(long_side * STRIP_SHARE)
        for start in (0, long_side - size):
            left, top, right, bottom = (
                (start, 0, start + size, height) if width >= height else (0, start, width, start + size)
            )
            crop = np.ascontiguousarray(pixels[top:bottom, left:right])
            found += self._poses(self._landmarker, crop, (left, top), (width, height))
        return found


def _paint_over(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy with the mask (grown by ~2% of the long side) filled with the image's mean colour."""
    from PIL import ImageFilter

    grow = 2 * max(1, round(0.01 * max(mask.shape))) + 1
    region = np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(grow))) > 0
    out = pixels.copy()
    out[region] = pixels.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out


def _head_centre(person: PersonDetection) -> np.ndarray | None:
    if person.keypoints is None:
        return None
    head = person.keypoints[HEAD]
    seen = head[:, 2] >= VISIBLE
    return head[seen, :2].mean(axis=0) if seen.any() else None


def _head_in_face(person: PersonDetection, face: Box, grow: float = 0.25) -> bool:
    centre = _head_centre(person)
    if centre is None:
        return False
    x0, y0, x1, y1 = face
    gx, gy = grow * (x1 - x0), grow * (y1 - y0)
    return bool(x0 - gx <= centre[0] <= x1 + gx and y0 - gy <= centre[1] <= y1 + gy)


def _same_person(a: PersonDetection, b: PersonDetection) -> bool:
    """Two poses of one person: keypoints on top of each other, or (without keypoints) overlapping boxes."""
    overlap = box_iou(a.box, b.box) >= 0.6
    if a.keypoints is None or b.keypoints is None:
        return overlap
    shared = (a.keypoints[:, 2] >= VISIBLE) & (b.keypoints[:, 2] >= VISIBLE)
    if shared.sum() < 4:
        return overlap
    distance = np.linalg.norm(a.keypoints[shared, :2] - b.keypoints[shared, :2], axis=1)
    size = min(max(a.box[2] - a.box[0], a.height), max(b.box[2] - b.box[0], b.height))
    return bool(np.median(distance) < 0.15 * max(size, 1.0))


def _part_of(small: PersonDetection, big: PersonDetection) -> bool:
    """A pose read into part of a bigger person (a hand, a held camera): its box lies mostly inside
    the bigger person's box, and its head or most of its mask on the bigger person's mask."""
    if big.mask is None or box_inside_share(small.box, big.box) < 0.7:
        return False
    on_big = big.mask > 0
    centre = _head_centre(small)
    if centre is not None:
        x, y = int(centre[0]), int(centre[1])
        if 0 <= y < on_big.shape[0] and 0 <= x < on_big.shape[1] and on_big[y, x]:
            return True
    if small.mask is None:
        return False
    own = small.mask > 0
    return bool((own & on_big).sum() >= 0.5 * max(int(own.sum()), 1))


def _dedup(persons: list[PersonDetection]) -> list[PersonDetection]:
    """One pose per person: the best-scored of poses that coincide, and no pose inside a taller one."""
    kept: list[PersonDetection] = []
    for person in sorted(persons, key=lambda p: p.score, reverse=True):
        if not any(_same_person(person, other) for other in kept):
            kept.append(person)
    whole: list[PersonDetection] = []
    for person in sorted(kept, key=lambda p: p.height, reverse=True):
        if not any(_part_of(person, other) for other in whole):
            whole.append(person)
    return whole


def _attribute_faces(persons: list[PersonDetection], faces: list[FaceDetection]) -> None:
    """Give each face to one person: the one whose head lies in it, else the first whose box holds it."""
    for face in faces:
        owners = [p for p in persons if _head_in_face(p, face.box)]
        if len(owners) > 1:
            fx, fy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
            owners.sort(key=lambda p: float(np.hypot(*(_head_centre(p) - (fx, fy)))))  # type: ignore[operator]
        if not owners:
            owners = sorted((p for p in persons if _face_belongs(face.box, p)), key=lambda p: p.height)
        if owners:
            owners[0].face_boxes.append(face.box)


def _rescale(scene: SceneDetection, factor: float) -> None:
    """Scale a scene found on a downscaled copy back to the image's pixels (masks resized smoothly)."""

    def grow(box: Box) -> Box:
        return (
            min(box[0] * factor, scene.width),
            min(box[1] * factor, scene.height),
            min(box[2] * factor, scene.width),
            min(box[3] * factor, scene.height),
        )

    for face in scene.faces:
        face.box = grow(face.box)
    for person in scene.persons:
        person.box = grow(person.box)
        person.face_boxes = [grow(b) for b in person.face_boxes]
        if person.keypoints is not None:
            person.keypoints[:, :2] *= factor
        if person.mask is not None:
            big = Image.fromarray(person.mask).resize((scene.width, scene.height), Image.Resampling.BILINEAR)
            person.mask = np.where(np.asarray(big) > 127, 255, 0).astype(np.uint8)
