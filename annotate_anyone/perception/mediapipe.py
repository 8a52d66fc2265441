"""Legacy person backend (``"mediapipe-legacy"``): MediaPipe 0.10.14 single-person pose and face detection.

The offline default is now the multi-person Tasks backend (``pose_tasks``); this one stays for comparison.

MediaPipe pose sees one person per call. To tell a group photo from a single person, the backend
"peels": it blanks out the first person (mask and keypoint box) and runs pose again; a second
pose found there is a second person. Faces come from both face models (short and full range),
merged, and are reported per image and attributed to the person whose box holds them.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from annotate_anyone.errors import MissingExtra
from annotate_anyone.perception.types import (
    Box,
    FaceDetection,
    PersonBackend,
    PersonDetection,
    SceneDetection,
    box_inside_share,
    box_iou,
    visible_in_frame,
)

MIN_KEYPOINTS = 8  # a pose with fewer visible in-frame keypoints is not a person


class FaceFinder:
    """Legacy face detection, short range (close faces) and full range (smaller faces) merged.

    Not thread-safe: callers hold their own lock.
    """

    def __init__(self, confidence: float = 0.6) -> None:
        self.confidence = confidence
        self._models: list[Any] = []

    def detect(self, pixels: np.ndarray) -> list[FaceDetection]:
        """Faces in an RGB array, best score first, overlapping boxes merged."""
        if not self._models:
            try:
                from mediapipe.python.solutions import face_detection
            except ImportError as exc:
                raise MissingExtra("MediaPipe face detection", "perception", "mediapipe==0.10.14") from exc
            self._models = [
                face_detection.FaceDetection(model_selection=selection, min_detection_confidence=self.confidence)
                for selection in (0, 1)
            ]
        height, width = pixels.shape[:2]
        faces: list[FaceDetection] = []
        for model in self._models:
            for det in model.process(pixels).detections or []:
                rel = det.location_data.relative_bounding_box
                x0, y0 = max(0.0, rel.xmin * width), max(0.0, rel.ymin * height)
                x1, y1 = min(width, (rel.xmin + rel.width) * width), min(height, (rel.ymin + rel.height) * height)
                if x1 > x0 and y1 > y0:
                    faces.append(FaceDetection(box=(x0, y0, x1, y1), score=float(det.score[0])))
        faces.sort(key=lambda f: f.score, reverse=True)
        merged: list[FaceDetection] = []
        for face in faces:
            if all(box_iou(face.box, kept.box) < 0.3 for kept in merged):
                merged.append(face)
        return merged


class MediaPipeBackend(PersonBackend):
    """Pose (``model_complexity=1``, segmentation on) + face detection, both shipped inside mediapipe 0.10.14."""

    name = "mediapipe-legacy-0.10.14"

    def __init__(self, *, pose_confidence: float = 0.5, face_confidence: float = 0.6, peel: bool = True) -> None:
        self.pose_confidence = pose_confidence
        self.face_confidence = face_confidence
        self.peel = peel
        self._lock = threading.Lock()  # the legacy solution graphs are not thread-safe
        self._pose: Any = None
        self._faces = FaceFinder(face_confidence)

    def _load(self) -> None:
        try:
            from mediapipe.python.solutions import pose
        except ImportError as exc:
            raise MissingExtra("the MediaPipe person backend", "perception", "mediapipe==0.10.14") from exc
        self._pose = pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=True,
            min_detection_confidence=self.pose_confidence,
        )

    def detect(self, image: Image.Image) -> SceneDetection:
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        height, width = pixels.shape[:2]
        scene = SceneDetection(width=width, height=height)
        with self._lock:
            if self._pose is None:
                self._load()
            scene.faces = self._faces.detect(pixels)
            first = self._detect_pose(pixels)
            if first is not None:
                scene.persons.append(first)
                if self.peel:
                    second = self._detect_pose(_blank_out(pixels, first))
                    if second is not None and box_iou(first.box, second.box) < 0.5:
                        scene.persons.append(second)
        for person in scene.persons:
            person.face_boxes = [f.box for f in scene.faces if _face_belongs(f.box, person)]
        scene.persons.sort(key=lambda p: p.height, reverse=True)
        return scene

    def _detect_pose(self, pixels: np.ndarray) -> PersonDetection | None:
        height, width = pixels.shape[:2]
        result = self._pose.process(pixels)
        if result.pose_landmarks is None:
            return None
        keypoints = np.array(
            [[lm.x * width, lm.y * height, lm.visibility] for lm in result.pose_landmarks.landmark], dtype=np.float32
        )
        seen = visible_in_frame(keypoints, width, height)
        if seen.sum() < MIN_KEYPOINTS:
            return None
        mask = None
        if result.segmentation_mask is not None:
            mask = (result.segmentation_mask > 0.5).astype(np.uint8) * 255
        box, mask = _person_box(keypoints[seen], mask, width, height)
        score = float(np.clip(keypoints[:, 2], 0, 1).mean())
        return PersonDetection(box=box, score=score, keypoints=keypoints, mask=mask)


def _person_box(seen: np.ndarray, mask: np.ndarray | None, width: int, height: int) -> tuple[Box, np.ndarray | None]:
    """Visible-keypoint box grown by the person mask near it (head top and feet lie beyond the joints)."""
    x0, y0 = float(seen[:, 0].min()), float(seen[:, 1].min())
    x1, y1 = float(seen[:, 0].max()), float(seen[:, 1].max())
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    rx0, ry0 = int(max(0, x0 - 0.2 * w)), int(max(0, y0 - 0.3 * h))
    rx1, ry1 = int(min(width, x1 + 0.2 * w + 1)), int(min(height, y1 + 0.15 * h + 1))
    if mask is not None:
        near = np.zeros_like(mask)
        near[ry0:ry1, rx0:rx1] = mask[ry0:ry1, rx0:rx1]
        mask = near
        ys, xs = np.nonzero(near)
        if len(xs):
            x0, y0 = min(x0, float(xs.min())), min(y0, float(ys.min()))
            x1, y1 = max(x1, float(xs.max() + 1)), max(y1, float(ys.max() + 1))
    box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    return box, mask


def _blank_out(pixels: np.ndarray, person: PersonDetection) -> np.ndarray:
    """A copy with ``person`` painted over in the image's mean colour (for the second pose pass)."""
    height, width = pixels.shape[:2]
    out = pixels.copy()
    x0, y0, x1, y1 = person.box
    pad_x, pad_y = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    region = np.zeros((height, width), dtype=bool)
    region[
        int(max(0, y0 - pad_y)) : int(min(height, y1 + pad_y)), int(max(0, x0 - pad_x)) : int(min(width, x1 + pad_x))
    ] = True
    if person.mask is not None:
        try:
            import cv2

            region |= cv2.dilate(person.mask, np.ones((15, 15), np.uint8)) > 0
        except ImportError:
            region |= person.mask > 0
    out[region] = pixels.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out


def _face_belongs(face: Box, person: PersonDetection) -> bool:
    x0, y0, x1, y1 = person.box
    pad = 0.1 * (x1 - x0)
    return box_inside_share(face, (x0 - pad, y0 - 0.1 * (y1 - y0), x1 + pad, y1)) >= 0.6
