"""What person backends return: plain dataclasses in image pixel coordinates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
VISIBLE = 0.5  # keypoint visibility above which a keypoint counts as seen


@dataclass(slots=True)
class FaceDetection:
    box: Box
    score: float


@dataclass(slots=True)
class PersonDetection:
    """One person: box, score, optional 33x3 keypoints (x, y, visibility), mask (uint8 HxW, 0/255), faces."""

    box: Box
    score: float
    keypoints: np.ndarray | None = None
    mask: np.ndarray | None = None
    face_boxes: list[Box] = field(default_factory=list)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(slots=True)
class SceneDetection:
    """Every person a backend found in one image, most prominent first, plus all faces it saw."""

    width: int
    height: int
    persons: list[PersonDetection] = field(default_factory=list)
    faces: list[FaceDetection] = field(default_factory=list)


class PersonBackend(ABC):
    """A person detector; ``name`` ends up in logs and model versions."""

    name: str = "backend"

    @abstractmethod
    def detect(self, image: Image.Image) -> SceneDetection:
        """Find the people in an RGB image."""


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_inside_share(inner: Box, outer: Box) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area > 0 else 0.0


def visible_in_frame(keypoints: np.ndarray, width: int, height: int, threshold: float = VISIBLE) -> np.ndarray:
    """Boolean mask of keypoints (33x3: x, y, visibility) that are visible and inside the image."""
    x, y, v = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    return (v >= threshold) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
