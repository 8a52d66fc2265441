"""Synthetic people with known attributes, for the flywheel test and benchmark (never for training data).

Each figure is drawn with PIL: a head with hair, a torso and sleeves in the top's colour and pattern,
trousers or shorts, shoes; the pose (MediaPipe's 33-point layout), the person mask and the face box
come out of the same drawing, so parsing and labelers run on them exactly as on photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotate_anyone.annotation.parsing import base as kp

TOP_COLORS = {"red": (200, 30, 40), "blue": (40, 70, 200), "green": (40, 150, 60), "yellow": (235, 205, 40),
              "white": (240, 240, 240), "black": (20, 20, 22)}  # fmt: skip
BOTTOM_COLORS = {"blue": (40, 60, 150), "black": (25, 25, 28), "beige": (215, 195, 160), "gray": (128, 128, 130)}
HAIR_COLORS = {"black": (25, 20, 20), "brown": (100, 60, 30), "blonde": (225, 195, 120)}
SKIN = [(230, 190, 160), (200, 150, 110), (150, 100, 70)]
TRUTH_CATEGORIES = ("3.hair_color", "6.color", "6.pattern", "6.sleeve_length", "8.color", "8.type")


@dataclass(slots=True)
class SyntheticPerson:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 0/255
    keypoints: np.ndarray  # (33, 3)
    box: tuple[float, float, float, float]
    face_box: tuple[float, float, float, float]
    truth: dict[str, str] = field(default_factory=dict)  # category id -> value


def make_person(seed: int, size: tuple[int, int] = (200, 320)) -> SyntheticPerson:
    """One random full-body figure and its true attributes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    bg = rng.integers(90, 170, 3)
    img = Image.fromarray(np.clip(bg + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8))
    mask = Image.new("L", size, 0)
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    top_name = str(rng.choice(list(TOP_COLORS)))
    bottom_name = str(rng.choice(list(BOTTOM_COLORS)))
    hair_name = str(rng.choice(list(HAIR_COLORS)))
    pattern = "striped" if rng.random() < 0.4 else "solid color"
    long_sleeve = bool(rng.random() < 0.5)
    shorts = bool(rng.random() < 0.3)
    skin = SKIN[int(rng.integers(len(SKIN)))]
    top, bottom, hair = TOP_COLORS[top_name], BOTTOM_COLORS[bottom_name], HAIR_COLORS[hair_name]
    cx = w / 2 + rng.uniform(-10, 10)
    head_r, sh_w, hip_w = 18.0, 70.0, 46.0
    head_y, sh_y, hip_y, knee_y, ankle_y = 40.0, 78.0, 170.0, 235.0, 295.0
    pts = np.zeros((33, 3), np.float32)
    pts[:, 2] = 0.95

    def put(i: int, x: float, y: float) -> None:
        pts[i, :2] = (x, y)

    put(kp.NOSE, cx, head_y + 3)
    for i, dx in ((1, -5), (kp.L_EYE, 6), (3, 9), (4, -5), (kp.R_EYE, -6), (6, -9)):
        put(i, cx + dx if i in (1, 2, 3) else cx + dx, head_y - 3)
    put(kp.L_EYE, cx + 6, head_y - 3)
    put(kp.R_EYE, cx - 6, head_y - 3)
    put(kp.L_EAR, cx + head_r, head_y)
    put(kp.R_EAR, cx - head_r, head_y)
    put(9, cx + 5, head_y + 10)
    put(10, cx - 5, head_y + 10)
    put(kp.L_SHOULDER, cx + sh_w / 2, sh_y)
    put(kp.R_SHOULDER, cx - sh_w / 2, sh_y)
    put(kp.L_ELBOW, cx + sh_w / 2 + 10, sh_y + 50)
    put(kp.R_ELBOW, cx - sh_w / 2 - 10, sh_y + 50)
    put(kp.L_WRIST, cx + sh_w / 2 + 14, sh_y + 98)
    put(kp.R_WRIST, cx - sh_w / 2 - 14, sh_y + 98)
    for i in kp.L_HAND:
        put(i, cx + sh_w / 2 + 15, sh_y + 110)
    for i in kp.R_HAND:
        put(i, cx - sh_w / 2 - 15, sh_y + 110)
    put(kp.L_HIP, cx + hip_w / 2, hip_y)
    put(kp.R_HIP, cx - hip_w / 2, hip_y)
    put(kp.L_KNEE, cx + hip_w / 2 + 2, knee_y)
    put(kp.R_KNEE, cx - hip_w / 2 - 2, knee_y)
    put(kp.L_ANKLE, cx + hip_w / 2 + 3, ankle_y)
    put(kp.R_ANKLE, cx - hip_w / 2 - 3, ankle_y)
    put(kp.L_HEEL, cx + hip_w / 2, ankle_y + 8)
    put(kp.R_HEEL, cx - hip_w / 2, ankle_y + 8)
    put(kp.L_TOE, cx + hip_w / 2 + 16, ankle_y + 10)
    put(kp.R_TOE, cx - hip_w / 2 - 16, ankle_y + 10)

    def p(i: int) -> tuple[float, float]:
        return float(pts[i, 0]), float(pts[i, 1])

    def limb(a: tuple[float, float], b: tuple[float, float], width: float, color: tuple[int, int, int]) -> None:
        for d in (draw, mdraw):
            d.line([a, b], fill=color if d is draw else 255, width=int(width))
            for c in (a, b):
                r = width / 2
                d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=color if d is draw else 255)

    # legs, shoes
    for hip, knee, ankle, heel, toe in ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE, kp.L_HEEL, kp.L_TOE),
                                        (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE, kp.R_HEEL, kp.R_TOE)):  # fmt: skip
        if shorts:  # bare from 40% down the thigh
            mid = (p(hip)[0] * 0.6 + p(knee)[0] * 0.4, p(hip)[1] * 0.6 + p(knee)[1] * 0.4)
            limb(mid, p(knee), 18, skin)
            limb(p(hip), mid, 22, bottom)
        else:
            limb(p(hip), p(knee), 22, bottom)
        limb(p(knee), p(ankle), 18, skin if shorts else bottom)
        limb(p(heel), p(toe), 12, (30, 30, 30))
    # torso
    torso = [p(kp.R_SHOULDER), p(kp.L_SHOULDER), (p(kp.L_HIP)[0] + 4, hip_y + 6), (p(kp.R_HIP)[0] - 4, hip_y + 6)]
    draw.polygon(torso, fill=top)
    mdraw.polygon(torso, fill=255)
    if pattern == "striped":
        stripe = tuple(int(v) for v in (np.array(top) * 0.35 + 0.65 * (255 - np.array(top))))
        for y in range(int(sh_y) + 6, int(hip_y), 10):
            draw.line([(cx - sh_w / 2 + 2, y), (cx + sh_w / 2 - 2, y)], fill=stripe, width=4)
    # arms
    for sh, el, wr in ((kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST), (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST)):
        limb(p(sh), p(el), 16, top)
        limb(p(el), p(wr), 13, top if long_sleeve else skin)
    # neck, head, hair
    limb((cx, head_y + 10), (cx, sh_y), 14, skin)
    for d in (draw, mdraw):
        d.ellipse([cx - head_r, head_y - head_r * 1.2, cx + head_r, head_y + head_r * 1.2],
                  fill=skin if d is draw else 255)  # fmt: skip
        d.chord([cx - head_r - 3, head_y - head_r * 1.45, cx + head_r + 3, head_y + head_r * 0.5], 180, 360,
                fill=hair if d is draw else 255)  # fmt: skip
    image = np.asarray(img).copy()
    m = np.asarray(mask).copy()
    ys, xs = np.nonzero(m)
    truth = {
        "3.hair_color": hair_name,
        "6.color": top_name,
        "6.pattern": pattern,
        "6.sleeve_length": "long sleeve" if long_sleeve else "short sleeve",
        "8.color": bottom_name,
        "8.type": "shorts" if shorts else "pants",
    }
    face = (cx - head_r, head_y - head_r * 0.9, cx + head_r, head_y + head_r * 1.2)
    return SyntheticPerson(image, m, pts, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())), face,
                           truth)  # fmt: skip
