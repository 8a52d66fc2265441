"""Framing of a person from visible keypoints (MediaPipe's 33-point layout): shot type and truncation.

Shot types, from widest to tightest: ``full_body`` (a foot or ankle in frame), ``nearly_full_body``
(knees but no feet), ``upper_body`` (waist up), ``portrait`` (head and shoulders), ``headshot`` (the
head fills the frame or no shoulder is seen). One function serves ingest (detection coordinates) and
annotation (stored coordinates).

Where the frame cuts the body decides: a knee counts when it is in view with some leg below it and
sits below the hips (a pose can put a bent knee anywhere); without hips in view, the frame reaches
the waist when it shows more than ``WAIST_FACES`` face heights below the face (arms are no guide: a
raised elbow is in a head-and-shoulders photo too); without a face, elbows stand in for the waist.
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
WAIST_FACES = 2.2  # chin to waist is about 2.5 face heights
KNEE_MARGIN = 0.1  # a knee is in view when the frame shows this much of the thigh's length below it


def _seen(keypoints: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    x, y, v = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    return (v >= threshold) & (x >= 0) & (x < width) & (y >= 0) & (y < height)


def shot_type(
    keypoints: np.ndarray | None,
    width: int,
    height: int,
    face_boxes: Sequence[Sequence[float]] = (),
    threshold: float = VISIBLE,
) -> str | None:
    """The widest framing the visible, in-frame keypoints support (``None``: no keypoints, no big face)."""
    faces = [tuple(float(v) for v in b[:4]) for b in face_boxes]
    if any(b[3] - b[1] >= HEADSHOT_FACE_SHARE * height for b in faces):
        return "headshot"
    if keypoints is None:
        return None
    kp = np.asarray(keypoints, dtype=np.float64)
    seen = _seen(kp, width, height, threshold)

    def any_of(ids: tuple[int, ...]) -> bool:
        return bool(seen[list(ids)].any())

    if any_of(FEET):
        return "full_body"
    hip_y = float(kp[list(HIPS), 1].mean())
    torso = abs(hip_y - float(kp[list(SHOULDERS), 1].mean()))
    for knee, hip in zip(KNEES, HIPS, strict=True):
        thigh = kp[knee, 1] - kp[hip, 1]
        if seen[knee] and thigh > 0.1 * torso and kp[knee, 1] <= height - KNEE_MARGIN * thigh:
            return "nearly_full_body"
    if any_of(HIPS):
        return "upper_body"
    if faces:
        chin = max(b[3] for b in faces)
        face_h = max(b[3] - b[1] for b in faces)
        if any_of(SHOULDERS) or height - chin > face_h:
            return "upper_body" if height - chin >= WAIST_FACES * face_h else "portrait"
        return "headshot"
    if any_of(ELBOWS):
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
