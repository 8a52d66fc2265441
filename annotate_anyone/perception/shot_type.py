"""Framing of a person from visible keypoints (MediaPipe's 33-point layout): shot type and truncation.

Shot types, from widest to tightest: ``full_body`` (a foot or ankle in frame), ``nearly_full_body``
(knees but no feet), ``upper_body`` (hips or elbows, waist up), ``portrait`` (head and shoulders),
``headshot`` (the head fills the frame or no shoulder is seen).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHOT_TYPES = ("full_body", "nearly_full_body", "upper_body", "portrait", "headshot")
FACE_NEEDED = frozenset({"upper_body", "portrait", "headshot"})  # a face must be seen in these framings

HEAD = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
SHOULDERS = (11, 12)
ELBOWS = (13, 14)
HIPS = (23, 24)
KNEES = (25, 26)
FEET = (27, 28, 29, 30, 31, 32)
VISIBLE = 0.5
HEADSHOT_FACE_SHARE = 0.4  # a face this tall relative to the image makes a headshot


def _seen(keypoints: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    x, y, v = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    return (v >= threshold) & (x >= 0) & (x < width) & (y >= 0) & (y < height)


def shot_type(
    keypoints: np.ndarray,
    width: int,
    height: int,
    face_boxes: Sequence[Sequence[float]] = (),
    threshold: float = VISIBLE,
) -> str:
    """The widest framing the visible, in-frame keypoints support."""
    seen = _seen(np.asarray(keypoints, dtype=np.float64), width, height, threshold)

    def any_of(ids: tuple[int, ...]) -> bool:
        return bool(seen[list(ids)].any())

    if any(b[3] - b[1] >= HEADSHOT_FACE_SHARE * height for b in face_boxes):
        return "headshot"
    if any_of(FEET):
        return "full_body"
    if any_of(KNEES):
        return "nearly_full_body"
    if any_of(HIPS) or any_of(ELBOWS):
        return "upper_body"
    if any_of(SHOULDERS):
        return "portrait"
    return "headshot"


def truncation(keypoints: np.ndarray, width: int, height: int, threshold: float = VISIBLE) -> str | None:
    """Why the person is cut badly by the frame, or ``None``.

    Cut means: no head keypoint in frame (head cut off), or the body continues past the left/right
    edge (a shoulder or hip predicted outside the image while its partner is inside).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    seen = _seen(kp, width, height, threshold)
    if not seen[list(HEAD)].any():
        return "head not in frame"
    for left, right in (SHOULDERS, HIPS):
        inside = [0 <= kp[i, 0] < width for i in (left, right)]
        if any(seen[[left, right]]) and inside.count(True) == 1:
            return "body cut at the side of the frame"
    return None
