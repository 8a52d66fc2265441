"""Offline human parsing from geometry and colour: person mask + pose landmarks + face box, no weights.

The mask says where the person is; the skeleton says which part of the body a pixel can belong to;
colour models decide between the candidates:

* skin, a Gaussian in OkLab sampled from the face (from the mouth and chin when the photo cuts the
  face off; the face box itself comes from the landmarks when no face was detected), decided by
  majority over a small window, separates bare arms, legs, neck and face from garments;
* the hair colour, sampled beside and above the face, grows hair from the head down over the
  shoulders, but only where a pixel is closer to the hair than to the skin and, below the shoulder
  line, than to the top (black hair over a black top stays top there);
* the top colour (chest) against the bottom colour (thighs) places the waist line: the change point
  in body height (along the spine, then along the thighs) where garment pixels turn from one to the
  other; with the same colour above and below, the waist sits just above the hip joints. The
  bottoms are what hangs from the waist in one piece; what is closer to the top's colours (a coat,
  a tunic) stays top; skin-coloured bottoms are told by the hips, which are never bare;
* a garment covers a limb segment in one piece, so a segment that is mostly garment is all garment;
* the filled space between the thighs separates a skirt from trousers (legs standing together in
  trousers fill it too; covered shins then say trousers); a skirt the colour of the top, with no
  waist line between them, is a dress (sleeves included).

Shoes are the garment pixels around heel, ankle and toe (and what is left below the ankles); neck
and neckline skin is face (as SCHP on ATR labels it). Whatever of the mask is left takes the label
of the nearest labelled pixel. Crops longer than ``work_side`` are parsed scaled down. Coarse by
construction: it cannot see bags, belts or scarves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate_anyone.annotation.colors import delta, oklab
from annotate_anyone.annotation.parsing import base as kp
from annotate_anyone.annotation.parsing.base import Parser, PersonView
from annotate_anyone.annotation.taxonomy import ATR

Point = np.ndarray
MOUTH_L, MOUTH_R = 9, 10  # MediaPipe pose mouth corners


def segment_coords(shape: tuple[int, int], p0: Point, p1: Point) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: where it projects on the segment p0-p1 (0 at p0, 1 at p1, clipped) and its
    distance to the segment."""
    h, w = shape
    ys, xs = np.ogrid[:h, :w]
    d = np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    length2 = float(d @ d) or 1e-6
    t = np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / length2, 0.0, 1.0)
    return t, np.sqrt((xs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2)


def segment_distance(shape: tuple[int, int], p0: Point, p1: Point) -> np.ndarray:
    """Distance of every pixel to the segment p0-p1."""
    return segment_coords(shape, p0, p1)[1]


def capsule(shape: tuple[int, int], p0: Point, p1: Point, radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the segment p0-p1."""
    h, w = shape
    out = np.zeros(shape, bool)
    x0 = int(max(0, np.floor(min(p0[0], p1[0]) - radius)))
    x1 = int(min(w, np.ceil(max(p0[0], p1[0]) + radius) + 1))
    y0 = int(max(0, np.floor(min(p0[1], p1[1]) - radius)))
    y1 = int(min(h, np.ceil(max(p0[1], p1[1]) + radius) + 1))
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = p1 - p0
    length2 = float(d @ d) or 1e-6
    t = np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / length2, 0.0, 1.0)
    dist2 = (xs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2
    out[y0:y1, x0:x1] = dist2 <= radius * radius
    return out


def polygon(shape: tuple[int, int], pts: list[Point]) -> np.ndarray:
    """Pixels inside a convex polygon (vertices in any order)."""
    p = np.asarray(pts, np.float32)
    c = p.mean(0)
    p = p[np.argsort(np.arctan2(p[:, 1] - c[1], p[:, 0] - c[0]))]
    h, w = shape
    x0, y0 = np.floor(p.min(0)).astype(int)
    x1, y1 = np.ceil(p.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out = np.zeros(shape, bool)
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = np.ones(xs.shape, bool)
    for i in range(len(p)):
        a, b = p[i], p[(i + 1) % len(p)]
        inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    out[y0:y1, x0:x1] = inside
    return out


def ellipse(shape: tuple[int, int], center: Point, rx: float, ry: float) -> np.ndarray:
    h, w = shape
    ys, xs = np.ogrid[:h, :w]
    return ((xs - center[0]) / max(rx, 1.0)) ** 2 + ((ys - center[1]) / max(ry, 1.0)) ** 2 <= 1.0


def _median(lab: np.ndarray, region: np.ndarray, at_least: int = 20) -> np.ndarray | None:
    """Median colour of ``region``, or ``None`` when it has fewer than ``at_least`` pixels."""
    if int(region.sum()) < at_least:
        return None
    return np.median(lab[region], 0).astype(np.float32)


@dataclass(slots=True)
class _Skin:
    """A diagonal Gaussian of skin colour in OkLab, sampled from the face."""

    mean: np.ndarray
    std: np.ndarray

    def is_skin(self, lab: np.ndarray) -> np.ndarray:
        z = (lab - self.mean) / self.std
        return (z * z).sum(-1) < 9.0

    @classmethod
    def fit(cls, samples: np.ndarray) -> _Skin:
        if len(samples) < 20:  # a generic skin tone when no face is visible
            return cls(np.array([0.72, 0.05, 0.05], np.float32), np.array([0.15, 0.03, 0.03], np.float32))
        mean = np.median(samples, 0)
        # Lips, eyes and brows are part of the sample: keep the pixels near the median, then measure.
        near = samples[delta(samples, mean) < 0.12]
        if len(near) >= 10:
            samples = near
        std = np.maximum(samples.std(0), np.array([0.09, 0.015, 0.015], np.float32))
        return cls(mean.astype(np.float32), std.astype(np.float32))


class GeometricParser(Parser):
    """Parsing from mask + pose + face; ``min_visibility`` gates the limbs that are drawn."""

    model_version = "geometric-2"
    labels_supported = frozenset(
        ATR[n]
        for n in (
            "background",
            "hat",
            "hair",
            "sunglasses",
            "upper-clothes",
            "skirt",
            "pants",
            "dress",
            "left-shoe",
            "right-shoe",
            "face",
            "left-leg",
            "right-leg",
            "left-arm",
            "right-arm",
        )
    )

    def __init__(self, min_visibility: float = 0.3, hair_delta: float = 0.09, work_side: int = 512) -> None:
        self.min_visibility = min_visibility
        self.hair_delta = hair_delta
        self.work_side = work_side  # parse at most this many pixels along the crop's long side

    def parse(self, image: np.ndarray, person: PersonView) -> np.ndarray:
        h, w = image.shape[:2]
        out = np.zeros((h, w), np.uint8)
        if person.keypoints is None or len(person.keypoints) < kp.NUM_KEYPOINTS:
            if person.mask is not None:  # no pose: the best we can say is "upper clothes"
                out[np.asarray(person.mask) > 0.5] = ATR["upper-clothes"]
            return out
        # Work on the person's box, grown to hold the whole skeleton, then paste back.
        pts = person.keypoints[:, :2]
        bx0, by0, bx1, by1 = person.box
        x0 = int(max(0, min(bx0, np.nanmin(pts[:, 0])) - 0.05 * w))
        y0 = int(max(0, min(by0, np.nanmin(pts[:, 1])) - 0.05 * h))
        x1 = int(min(w, max(bx1, np.nanmax(pts[:, 0])) + 0.05 * w))
        y1 = int(min(h, max(by1, np.nanmax(pts[:, 1])) + 0.05 * h))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return out
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
        keypoints = person.keypoints.copy()
        keypoints[:, 0] -= x0
        keypoints[:, 1] -= y0
        faces = [(fx0 - x0, fy0 - y0, fx1 - x0, fy1 - y0) for fx0, fy0, fx1, fy1 in person.face_boxes]
        mask = None if person.mask is None else np.asarray(person.mask)[y0:y1, x0:x1] > 0.5
        scale = min(1.0, self.work_side / max(crop.shape[:2]))
        if scale >= 1.0:
            out[y0:y1, x0:x1] = _Scene(crop, keypoints, faces, mask, self).label()
            return out
        # Big crops are parsed smaller and the labels brought back up inside the full-size mask.
        from PIL import Image

        size = (max(4, round(crop.shape[1] * scale)), max(4, round(crop.shape[0] * scale)))
        small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
        small_mask = None
        if mask is not None:
            small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 127
        keypoints[:, :2] *= (size[0] / crop.shape[1], size[1] / crop.shape[0])
        faces = [tuple(v * scale for v in f) for f in faces]
        labels = _Scene(small, keypoints, faces, small_mask, self).label()
        labels = np.asarray(Image.fromarray(labels).resize(crop.shape[1::-1], Image.Resampling.NEAREST))
        if mask is not None:
            from scipy import ndimage

            grown = ndimage.grey_dilation(labels, size=3)  # the mask's edge between two small pixels
            labels = np.where(mask, np.where(labels > 0, labels, grown), 0).astype(np.uint8)
        out[y0:y1, x0:x1] = labels
        return out


class _Scene:
    """One parse: holds the crop, its OkLab image and the skeleton measures, and paints the labels."""

    def __init__(
        self,
        rgb: np.ndarray,
        keypoints: np.ndarray,
        faces: list[tuple[float, float, float, float]],
        mask: np.ndarray | None,
        cfg: GeometricParser,
    ) -> None:
        self.shape = rgb.shape[:2]
        h, w = self.shape
        self.ys, self.xs = np.ogrid[:h, :w]
        self.lab = oklab(rgb)
        self._channels = [np.ascontiguousarray(self.lab[..., i]) for i in range(3)]
        self._dists: dict[bytes, np.ndarray] = {}
        self.kp = keypoints
        self.cfg = cfg
        self.labels = np.zeros(self.shape, np.uint8)
        ls, rs = self.pt(kp.L_SHOULDER), self.pt(kp.R_SHOULDER)
        lh, rh = self.pt(kp.L_HIP), self.pt(kp.R_HIP)
        self.shoulder_w = max(float(np.linalg.norm(ls - rs)), 8.0)
        self.shoulder_mid, self.hip_mid = (ls + rs) / 2, (lh + rh) / 2
        axis = self.hip_mid - self.shoulder_mid
        self.torso_len = max(float(np.linalg.norm(axis)), self.shoulder_w * 0.8)
        self.hip_w = max(float(np.linalg.norm(lh - rh)), 0.5 * self.shoulder_w)
        # Torso frame: t = 0 at the shoulders, 1 at the hips (along the spine); s = pixels sideways.
        down = axis / max(float(np.linalg.norm(axis)), 1e-6) if np.linalg.norm(axis) > 1 else np.array([0.0, 1.0])
        self.down = down.astype(np.float32)
        dx, dy = self.xs - self.shoulder_mid[0], self.ys - self.shoulder_mid[1]
        self.t = ((dx * down[0] + dy * down[1]) / self.torso_len).astype(np.float32)
        self.s = (dx * -down[1] + dy * down[0]).astype(np.float32)
        self.face = self._face_box(faces)
        fx0, _, fx1, fy1 = self.face
        chin = np.array([(fx0 + fx1) / 2, fy1], np.float32) - self.shoulder_mid
        self.t_chin = float(chin @ self.down) / self.torso_len  # the chin's height along the body
        self.fg = mask if mask is not None else self._skeleton_mask()
        self.hair_c: np.ndarray | None = None
        self.top_c: np.ndarray | None = None
        self.low_c: np.ndarray | None = None
        self.dress = False
        self.waist = 1.0  # where the top ends, in torso units (set by _lower)

    # -- geometry helpers -------------------------------------------------------------------------
    def dist(self, color: np.ndarray) -> np.ndarray:
        """OkLab distance of every pixel to ``color`` (as ``colors.delta``; kept per colour)."""
        key = np.asarray(color, np.float32).tobytes()
        if key not in self._dists:
            sq = sum((ch - np.float32(c)) ** 2 for ch, c in zip(self._channels, color, strict=True))
            self._dists[key] = np.sqrt(sq)
        return self._dists[key]

    def pt(self, i: int) -> Point:
        return self.kp[i, :2].astype(np.float32)

    def visible(self, *idx: int) -> bool:
        h, w = self.shape
        for i in idx:
            x, y, v = self.kp[i]
            if v < self.cfg.min_visibility or not (-0.02 * w <= x <= 1.02 * w and -0.02 * h <= y <= 1.02 * h):
                return False
        return True

    def _face_box(self, faces: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
        """The detected face nearest the nose (its bottom grown to the chin), else one from the landmarks."""
        nose = self.pt(kp.NOSE)
        for fx0, fy0, fx1, fy1 in sorted(faces, key=lambda f: (f[0] - nose[0]) ** 2 + (f[1] - nose[1]) ** 2):
            fw, fh = fx1 - fx0, fy1 - fy0
            if fx0 - 0.2 * fw <= nose[0] <= fx1 + 0.2 * fw and fy0 - 0.5 * fh <= nose[1] <= fy1 + 0.5 * fh:
                return fx0, fy0, fx1, fy1 + 0.12 * fh  # detector boxes stop short of the chin
        # Detector boxes measured against the landmarks: top 0.6 eye-mouth distances above the eyes,
        # bottom 0.76 below the mouth, 2.4 wide (here with the same chin margin as above).
        eyes_y = (self.pt(kp.L_EYE)[1] + self.pt(kp.R_EYE)[1]) / 2
        mouth_y = (self.pt(MOUTH_L)[1] + self.pt(MOUTH_R)[1]) / 2
        ear_w = float(np.linalg.norm(self.pt(kp.L_EAR) - self.pt(kp.R_EAR)))
        em = max(float(mouth_y - eyes_y), 0.5 * ear_w, 0.12 * self.shoulder_w)
        return nose[0] - 1.2 * em, eyes_y - 0.6 * em, nose[0] + 1.2 * em, mouth_y + 1.05 * em

    def _skeleton_mask(self) -> np.ndarray:
        fg = np.zeros(self.shape, bool)
        r = self.shoulder_w * 0.3
        for a, b in ((11, 12), (11, 23), (12, 24), (23, 24), (11, 13), (13, 15), (12, 14), (14, 16), (23, 25),
                     (25, 27), (24, 26), (26, 28)):  # fmt: skip
            fg |= capsule(self.shape, self.pt(a), self.pt(b), r)
        fx0, fy0, fx1, fy1 = self.face
        fg |= ellipse(self.shape, np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2]), (fx1 - fx0) * 0.8, (fy1 - fy0) * 0.9)
        return fg

    def paint(self, region: np.ndarray, label: str, *, over: tuple[str, ...] = ()) -> None:
        """Set ``label`` on ``region`` where nothing (or one of ``over``) is painted yet."""
        free = self.labels == 0
        for name in over:
            free |= self.labels == ATR[name]
        self.labels[region & free & self.fg] = ATR[label]

    # -- the parse ----------------------------------------------------------------------------------
    def label(self) -> np.ndarray:
        # Skin by majority over a small window: printed and textured fabric has skin-coloured specks.
        self.skin = self._skin_model()
        is_skin = self._majority(self.skin.is_skin(self.lab))
        self._garment_colors(is_skin)
        self._head(is_skin)
        self._neck(is_skin)
        self._feet(is_skin)
        self._arms(is_skin)
        leg_skin = self._leg_skin(is_skin)
        self._lower(leg_skin)
        self._torso()
        if self.dress:  # a dress is one garment from the neckline down, sleeves included
            self.labels[self.labels == ATR["upper-clothes"]] = ATR["dress"]
        self._leftovers(leg_skin)
        self._fill()
        return self.labels

    def _majority(self, pixels: np.ndarray) -> np.ndarray:
        """A per-pixel decision by majority over a small window (textured cloth decides in specks)."""
        from scipy import ndimage

        size = max(3, int(0.06 * self.shoulder_w) | 1)
        return ndimage.uniform_filter(pixels.astype(np.float32), size) > 0.5

    def _skin_model(self) -> _Skin:
        fx0, fy0, fx1, fy1 = self.face
        cx, cy = (fx0 + fx1) / 2, fy0 + 0.55 * (fy1 - fy0)
        inner = ellipse(self.shape, np.array([cx, cy]), 0.25 * (fx1 - fx0), 0.25 * (fy1 - fy0)) & self.fg
        if inner.sum() < 20:  # the face is cut off by the frame: the mouth and chin below the nose
            nose_y = max(float(self.pt(kp.NOSE)[1]), 0.0)
            inner = (np.abs(self.xs - cx) < 0.25 * (fx1 - fx0)) & (self.ys > nose_y) & (self.ys < fy1) & self.fg
        return _Skin.fit(self.lab[inner])

    def _garment_colors(self, is_skin: np.ndarray) -> None:
        """Median colours of the chest (top) and of the thighs (bottom, below where long tops end), skin excluded."""
        chest = (self.t > 0.15) & (self.t < 0.6) & (np.abs(self.s) < 0.3 * self.shoulder_w) & self.fg & ~is_skin
        self.top_c = _median(self.lab, chest)
        # The lower half of the thighs first (a long top can hang over the upper half), else the upper
        # half (shorts and short skirts leave the lower half bare).
        for t0, t1 in ((0.45, 0.8), (0.15, 0.45)):
            thighs = np.zeros(self.shape, bool)
            for hip, knee in ((kp.L_HIP, kp.L_KNEE), (kp.R_HIP, kp.R_KNEE)):
                a, b = self.pt(hip), self.pt(knee)
                thighs |= capsule(self.shape, a + t0 * (b - a), a + t1 * (b - a), 0.3 * self.hip_w)
            thighs &= self.fg & (self.t > 1.0)
            cloth = thighs & ~is_skin
            if cloth.sum() >= max(20, 0.25 * thighs.sum()):
                self.low_c = _median(self.lab, cloth)
                break
        hips = (self.t > 1.0) & (self.t < 1.25) & (np.abs(self.s) < 0.8 * self.hip_w) & self.fg
        if hips.sum() >= 20 and is_skin[hips].mean() > 0.5:  # bare hips are rare: skin-coloured bottoms
            self.low_c = _median(self.lab, hips)

    def _leg_skin(self, is_skin: np.ndarray) -> np.ndarray:
        """Skin for the legs: with skin-coloured bottoms, what is closer to them than to the face is cloth."""
        if self.low_c is None or not bool(self.skin.is_skin(self.low_c)):
            return is_skin
        return is_skin & ~(self.dist(self.low_c) < self.dist(self.skin.mean) - 0.01)

    def _head(self, is_skin: np.ndarray) -> None:
        from scipy import ndimage

        fx0, fy0, fx1, fy1 = self.face
        fw, fh = fx1 - fx0, fy1 - fy0
        center = np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2], np.float32)
        xs, ys = self.xs, self.ys
        # The face proper sits a little above the box's centre: forehead above it, chin at its bottom.
        mid = center - np.array([0.0, 0.1 * fh], np.float32)
        face_ellipse = ellipse(self.shape, mid, 0.45 * fw, 0.5 * fh)
        inner = ellipse(self.shape, mid, 0.32 * fw, 0.36 * fh)
        head_zone = (xs >= fx0 - 0.6 * fw) & (xs <= fx1 + 0.6 * fw) & (ys <= fy1) & self.fg
        head_zone &= self.t < self.t_chin + 0.05  # not a bent-over back beside the face
        # Hair colour: beside the face (temples), else above it; never skin.
        d_skin = self.dist(self.skin.mean)
        temples = (
            (((xs >= fx0 - 0.3 * fw) & (xs < fx0 + 0.05 * fw)) | ((xs > fx1 - 0.05 * fw) & (xs <= fx1 + 0.3 * fw)))
            & (ys >= fy0 + 0.25 * fh)
            & (ys <= fy0 + 0.75 * fh)
            & self.fg
            & ~is_skin
            & ~inner
        )
        temple_c = _median(self.lab, temples, 30)
        crown_c = _median(self.lab, head_zone & (ys < fy0 - 0.05 * fh) & ~is_skin, 30)
        self.hair_c = temple_c if temple_c is not None else crown_c
        if self.hair_c is None or float(delta(self.hair_c, self.skin.mean)) < 0.06:  # no hair in view (or bald)
            self.paint(face_ellipse & (is_skin | inner), "face")
            self.paint(head_zone & (ys < fy0 + 0.35 * fh) & ~is_skin, "hair")
            return
        d_hair = self.dist(self.hair_c)
        hairlike = d_hair < self.cfg.hair_delta
        hair = hairlike & (d_hair < d_skin)  # blond hair is skin-coloured, but closer to the hair's colour
        self.paint(face_ellipse & ~(hair & ~inner), "face")
        rest = head_zone & (self.labels == 0)
        top = rest & (ys < fy0 + 0.1 * fh)
        not_hair_top = top & ~hairlike & ~is_skin
        crown_differs = crown_c is not None and float(delta(crown_c, self.hair_c)) > 2 * self.cfg.hair_delta
        if crown_differs and top.sum() > 0.15 * fw * fh and not_hair_top.sum() > 0.6 * top.sum():  # a hat
            self.paint(not_hair_top | (top & (ys < fy0 - 0.15 * fh)), "hat")
        self.paint(rest & is_skin & ~hair & (ys > fy0), "face")  # ears
        # Above the eyes everything left is hair; lower down only hair-coloured pixels (not a collar).
        self.paint(rest & ((ys < fy0 + 0.35 * fh) | hairlike), "hair")
        self._sunglasses(is_skin)
        # Long hair below the face: hair-coloured, connected to the head's hair, and below the shoulder
        # line closer to the hair than to the top (same-coloured hair and top: the top wins there).
        lateral = np.abs(xs - center[0]) <= 1.3 * fw
        reach = (ys > fy1 - 0.1 * fh) & (self.t < 0.6)
        low = self.fg & hair & lateral & reach & (self.labels == 0)
        if self.top_c is not None:
            closer = d_hair < self.dist(self.top_c) - 0.02
            low &= closer | (self.t < -0.05)  # above the shoulder line (along the body)
        seeds = self.labels == ATR["hair"]
        comp, n = ndimage.label(low | seeds)
        if n:
            keep = np.unique(comp[seeds & (comp > 0)])
            self.paint(np.isin(comp, keep) & low, "hair")

    def _neck(self, is_skin: np.ndarray) -> None:
        """Neck and neckline skin joined to the chin is face (SCHP on ATR labels it so)."""
        from scipy import ndimage

        fx0, fy0, fx1, fy1 = self.face
        fw, fh = fx1 - fx0, fy1 - fy0
        cx, sx = (fx0 + fx1) / 2, float(self.shoulder_mid[0])
        span = max(float(self.shoulder_mid[1]) - fy1, 1.0)
        col_x = cx + np.clip((self.ys - fy1) / span, 0.0, 1.0) * (sx - cx)
        xs, ys = self.xs, self.ys
        free = is_skin & self.fg & (self.labels == 0)
        neck = free & (ys > fy1 - 0.15 * fh) & (self.t < 0.1) & (np.abs(xs - col_x) < 0.45 * fw)
        chest = free & (ys > fy1 - 0.15 * fh) & (self.t < 0.4) & (np.abs(self.s) < 0.3 * self.shoulder_w)
        comp, n = ndimage.label(neck | chest)
        if n:
            keep = np.unique(comp[neck & (comp > 0)])
            self.paint(np.isin(comp, keep) & (neck | chest), "face")

    def _sunglasses(self, is_skin: np.ndarray) -> None:
        if not self.visible(kp.L_EYE, kp.R_EYE):
            return
        le, re = self.pt(kp.L_EYE), self.pt(kp.R_EYE)
        r = max(float(np.linalg.norm(le - re)) * 0.35, 2.0)
        band = (capsule(self.shape, le, re, r)) & self.fg
        dark = band & (self.lab[..., 0] < 0.3) & ~is_skin
        if band.sum() > 10 and dark.sum() > 0.55 * band.sum():
            self.labels[dark] = ATR["sunglasses"]

    def _feet(self, is_skin: np.ndarray) -> None:
        """Shoes: garment pixels around heel and toe, from the ankle down (along the shin); near the
        ankle only those closer to the shoe's colour (the sole end) than to the bottoms'."""
        d_low = None if self.low_c is None else self.dist(self.low_c)
        for knee, ankle, heel, toe, label in ((kp.L_KNEE, kp.L_ANKLE, kp.L_HEEL, kp.L_TOE, "left"),
                                              (kp.R_KNEE, kp.R_ANKLE, kp.R_HEEL, kp.R_TOE, "right")):  # fmt: skip
            if not self.visible(ankle, heel, toe):
                continue
            a, hl, tp = self.pt(ankle), self.pt(heel), self.pt(toe)
            shin = a - self.pt(knee)
            down = shin / max(float(np.linalg.norm(shin)), 1e-6)
            foot_len = max(float(np.linalg.norm(hl - tp)), 0.3 * self.hip_w)
            r = 0.45 * foot_len
            foot = capsule(self.shape, hl, tp, r) | capsule(self.shape, a, (hl + tp) / 2, r)
            along = (self.xs - a[0]) * down[0] + (self.ys - a[1]) * down[1]
            shoe = foot & (along > -0.3 * foot_len) & ~is_skin & self.fg
            shoe_c = _median(self.lab, shoe & (along > 0.2 * foot_len))
            if shoe_c is not None and d_low is not None and float(delta(shoe_c, self.low_c)) > 0.05:
                shoe &= (self.dist(shoe_c) < d_low) | (along > 0.2 * foot_len)
            self.paint(shoe, f"{label}-shoe")
            self.paint(foot & is_skin & (along > -0.3 * foot_len), f"{label}-leg")

    def _arms(self, is_skin: np.ndarray) -> None:
        # A sleeve is what is not skin in the arm, unless it has the bottoms' colour (a hand by the hip).
        sleeve = ~is_skin
        if self.top_c is not None and self.low_c is not None:
            sleeve &= self.dist(self.top_c) <= self.dist(self.low_c) + 0.02
        for sh, el, wr, hand, label in ((kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST, kp.L_HAND, "left-arm"),
                                        (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST, kp.R_HAND, "right-arm")):  # fmt: skip
            hand_pt = self.kp[list(hand), :2].mean(0)
            segments = [(self.pt(sh), self.pt(el), 0.17, (sh, el)), (self.pt(el), self.pt(wr), 0.14, (el, wr)),
                        (self.pt(wr), hand_pt, 0.13, (wr,))]  # fmt: skip
            for p0, p1, rel, needed in segments:
                if not self.visible(*needed):
                    continue
                region = capsule(self.shape, p0, p1, rel * self.shoulder_w)
                self.paint(region & is_skin, label)
                self.paint(region & sleeve & (self.t < 1.2), "upper-clothes")

    def _waist(self, is_skin: np.ndarray, height: np.ndarray, thighs: np.ndarray) -> float:
        """Where the top ends, in torso units (0 shoulders, 1 hips), from the torso's column and the
        thighs (``height``: the body height of each pixel, along the spine and then along the thighs)."""
        default = 0.85  # trousers are worn a little above the hip joints
        if self.top_c is None or self.low_c is None or float(delta(self.top_c, self.low_c)) < 0.05:
            return default
        bins_n = 28  # t from 0.4 to 1.8 in steps of 0.05
        half = max(0.6 * self.hip_w, 0.2 * self.torso_len)  # side views have the hip joints together
        band = (height > 0.4) & (height < 1.8) & ((np.abs(self.s) < half) | thighs) & self.fg & ~is_skin
        closer_low = self.dist(self.low_c) < self.dist(self.top_c)
        bins = np.clip(((height - 0.4) / 0.05).astype(int), 0, bins_n - 1)
        total = np.bincount(bins[band], minlength=bins_n).astype(np.float64)
        low = np.bincount(bins[band & closer_low], minlength=bins_n).astype(np.float64)
        if total.sum() < 50:
            return default
        # The change point: top-coloured rows above it and bottom-coloured rows below it agree most
        # (a print on the top or a shadow on the trousers moves it less than a first-row rule would).
        top_above = np.concatenate([[0.0], np.cumsum(total - low)])
        low_below = np.concatenate([np.cumsum(low[::-1])[::-1], [0.0]])
        agree = top_above + low_below
        cut = int(np.argmax(agree[2:]) + 2)  # a top ends at t >= 0.5
        if cut == bins_n or low_below[cut] < 0.5 * total[cut:].sum():
            return default
        return 0.4 + 0.05 * cut

    def _lower(self, is_skin: np.ndarray) -> None:
        lh, rh = self.pt(kp.L_HIP), self.pt(kp.R_HIP)
        h, _ = self.shape
        if min(lh[1], rh[1]) >= h:  # hips below the frame: no lower body in view
            return
        hip_w = self.hip_w
        # Body height: t along the spine, then from the hip joint along each thigh (a bent or seated
        # body's thighs are not in line with the spine).
        height, thighs, dist = self.t.copy(), np.zeros(self.shape, bool), {}
        for hip, knee, ankle, label in ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE, "left-leg"),
                                        (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE, "right-leg")):  # fmt: skip
            along, d = segment_coords(self.shape, self.pt(hip), self.pt(knee))
            d = d / (0.55 * hip_w)
            on_thigh = (d < 1) & (along > 0)
            thigh_len = float(np.linalg.norm(self.pt(knee) - self.pt(hip)))
            height = np.where(on_thigh, np.maximum(height, 1.0 + along * thigh_len / self.torso_len), height)
            thighs |= on_thigh
            if self.visible(knee, ankle):
                shin = segment_distance(self.shape, self.pt(knee), self.pt(ankle)) / (0.35 * hip_w)
                height = np.where(shin < 1, np.maximum(height, 1.0 + thigh_len / self.torso_len), height)
                d = np.minimum(d, shin)
            dist[label] = d  # < 1 inside the leg's capsule
        self.waist = waist = self._waist(is_skin, height, thighs)
        below = height >= waist
        legs = (dist["left-leg"] < 1) | (dist["right-leg"] < 1)
        hips_block = (self.t < 1.3) & (np.abs(self.s) < 0.5 * hip_w + 0.3 * self.shoulder_w)
        zone = (legs | hips_block) & below
        skirt_like = self._skirt_like(is_skin)
        same_as_top = self.top_c is not None and self.low_c is not None and float(delta(self.top_c, self.low_c)) < 0.06
        lower_label = ("dress" if same_as_top else "skirt") if skirt_like else "pants"
        segments = []
        for hip, knee, ankle in ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE), (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE)):
            segments.append((self.pt(hip), self.pt(knee), 0.55 * hip_w))
            if self.visible(knee, ankle):
                segments.append((self.pt(knee), self.pt(ankle), 0.35 * hip_w))
        covered = self._covered(is_skin, below, segments)
        garment = (zone & ~is_skin) | covered
        if skirt_like:  # the garment spans the gap between the legs
            kl, kr = self.pt(kp.L_KNEE), self.pt(kp.R_KNEE)
            garment |= polygon(self.shape, [lh, rh, kr, kl]) & ~is_skin & below
        from scipy import ndimage

        # The bottoms hang from the waist in one piece: garment specks further down a bare leg (a
        # strap, an anklet, a shadow) are not part of them.
        # Connected away from the mask's edge, where blended background pixels join everything up.
        comp, n = ndimage.label(garment & ndimage.binary_erosion(self.fg, iterations=2))
        waistband = (height >= waist) & (height < waist + 0.4) & (comp > 0)
        if n and waistband.any():
            kept = np.isin(comp, np.unique(comp[waistband]))
            garment &= ndimage.binary_dilation(kept, iterations=3)
        outer = self._outerwear(is_skin)
        if outer is not None:  # a coat or long top hanging down from the torso over the bottoms stays top
            hanging = garment & outer
            comp, n = ndimage.label(hanging | (self.fg & ~is_skin & ~below & (self.t > 0.3)))
            if n:
                keep = np.unique(comp[~below & (comp > 0)])
                self.paint(hanging & np.isin(comp, keep), "upper-clothes")
        self.paint(garment, lower_label)
        left = dist["left-leg"] <= dist["right-leg"]
        bare = legs & is_skin & ~covered & (self.t > 0.9)
        self.paint(bare & left, "left-leg")
        self.paint(bare & ~left, "right-leg")
        self.dress = lower_label == "dress"

    def _covered(self, is_skin: np.ndarray, zone: np.ndarray, segments: list[tuple[Point, Point, float]]) -> np.ndarray:
        """Pixels of limb segments whose cross-section is mostly garment. A garment covers a limb in one
        piece from the body out, so its skin-coloured specks (print, sheen, beige cloth) are garment too."""
        out = np.zeros(self.shape, bool)
        for p0, p1, r in segments:
            t, dist = segment_coords(self.shape, p0, p1)
            inside = (dist < r) & zone & self.fg
            if not inside.any():
                continue
            bins = np.minimum((t * 10).astype(int), 9)
            total = np.bincount(bins[inside], minlength=10)
            skin = np.bincount(bins[inside & is_skin], minlength=10)
            out |= inside & ((total >= 10) & (skin < 0.5 * total))[bins]
        return out

    def _outerwear(self, is_skin: np.ndarray) -> np.ndarray | None:
        """Pixels closer to the top's colours (chest, and the torso's sides for an open coat) than to
        the bottoms', when those colours differ; ``None`` when they do not."""
        if self.low_c is None:
            return None
        sides = (self.t > 0.5) & (self.t < 0.95) & (np.abs(self.s) > 0.25 * self.shoulder_w)
        sides &= (np.abs(self.s) < 0.55 * self.shoulder_w) & self.fg & ~is_skin & (self.labels == 0)
        tops = [c for c in (self.top_c, _median(self.lab, sides)) if c is not None]
        tops = [c for c in tops if float(delta(c, self.low_c)) >= 0.08]
        if not tops:
            return None
        d_top = np.minimum.reduce([self.dist(c) for c in tops])
        return self._majority(d_top < self.dist(self.low_c) - 0.02)

    def _skirt_like(self, is_skin: np.ndarray) -> bool:
        """Whether the garment fills the space between the thighs (skirt/dress) rather than leaving it
        open (trousers). Thighs touching in trousers also fill it: covered shins with an open gap
        between them then say trousers."""
        if not (self.visible(kp.L_KNEE) and self.visible(kp.R_KNEE)):
            return False
        garment = ~is_skin
        if self.low_c is not None:  # skin-coloured cloth: closer to the bottoms than to the face
            garment = garment | (self.dist(self.low_c) < self.dist(self.skin.mean))
        garment &= self.fg
        lh, rh, kl, kr = (self.pt(i) for i in (kp.L_HIP, kp.R_HIP, kp.L_KNEE, kp.R_KNEE))
        thighs = self._midline((lh + rh) / 2, (kl + kr) / 2, np.linspace(0.25, 0.55, 7), garment)
        if thighs is None or thighs < 0.7:
            return False
        if not (self.visible(kp.L_ANKLE) and self.visible(kp.R_ANKLE)):
            return True
        la, ra = self.pt(kp.L_ANKLE), self.pt(kp.R_ANKLE)
        shins = capsule(self.shape, (kl + la) / 2, la, 0.15 * self.hip_w)
        shins |= capsule(self.shape, (kr + ra) / 2, ra, 0.15 * self.hip_w)
        covered = float(garment[shins & self.fg].mean()) if (shins & self.fg).any() else 0.0
        if covered <= 0.6:  # bare shins below a garment spanning the thighs
            return True
        gap = self._midline((kl + kr) / 2, (la + ra) / 2, np.linspace(0.3, 0.8, 6), self.fg)
        if gap is not None and gap < 0.5:  # covered shins apart: trousers
            return False
        # Covered shins together: trousers, unless the garment is much wider there than two legs.
        x, y = (int(round(v)) for v in ((kl + kr) / 2 + (la + ra) / 2) / 2)
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w) or not self.fg[y, x]:
            return False
        row = self.fg[y]
        left = x - int(np.argmin(row[x::-1])) if not row[: x + 1].all() else 0
        right = x + int(np.argmin(row[x:])) if not row[x:].all() else w
        return right - left > 2.2 * self.hip_w

    def _midline(self, p0: Point, p1: Point, ts: np.ndarray, region: np.ndarray) -> float | None:
        """Share of the points p0 + t (p1 - p0) that fall in ``region`` (None when most are off the image)."""
        h, w = self.shape
        hits = []
        for t in ts:
            x, y = (int(round(v)) for v in p0 + t * (p1 - p0))
            if 0 <= x < w and 0 <= y < h:
                hits.append(bool(region[y, x]))
        return float(np.mean(hits)) if len(hits) >= len(ts) / 2 else None

    def _torso(self) -> None:
        ls, rs, lh, rh = (self.pt(i) for i in (kp.L_SHOULDER, kp.R_SHOULDER, kp.L_HIP, kp.R_HIP))
        out_l = (ls - rs) / np.linalg.norm(ls - rs) * 0.22 * self.shoulder_w
        up = -0.25 * self.torso_len * self.down
        torso = polygon(self.shape, [ls + out_l + up, rs - out_l + up, rh - out_l * 0.8, lh + out_l * 0.8])
        # A top that ends below the hips: the hip block down to the waist line.
        torso |= (self.t > 0.5) & (self.t < self.waist) & (np.abs(self.s) < 0.5 * self.hip_w + 0.3 * self.shoulder_w)
        self.paint(torso, "upper-clothes")

    def _leftovers(self, is_skin: np.ndarray) -> None:
        """Mask pixels no part claimed (the pose misplaced a limb): below the hips, skin is leg and,
        beyond the ankles, garment is shoe, each on the side of the nearer leg; above the chin (along
        the body), what is not skin is hair."""
        self.paint(self.fg & (self.labels == 0) & (self.t < self.t_chin) & ~is_skin, "hair")
        todo = self.fg & (self.labels == 0) & (self.t > 1.0)
        if not todo.any() or not self.visible(kp.L_ANKLE, kp.R_ANKLE):
            return
        la, ra = self.pt(kp.L_ANKLE), self.pt(kp.R_ANKLE)
        lk, rk = self.pt(kp.L_KNEE), self.pt(kp.R_KNEE)
        left = segment_distance(self.shape, lk, la) <= segment_distance(self.shape, rk, ra)
        beyond = np.zeros(self.shape, bool)
        for knee, ankle in ((lk, la), (rk, ra)):  # from a little above the ankle (a strap, a boot's top)
            shin = ankle - knee
            length = max(float(np.linalg.norm(shin)), 1e-6)
            beyond |= (self.xs - ankle[0]) * shin[0] / length + (self.ys - ankle[1]) * shin[1] / length > -0.15 * length
        self.paint(todo & is_skin & left, "left-leg")
        self.paint(todo & is_skin & ~left, "right-leg")
        self.paint(todo & ~is_skin & beyond & left, "left-shoe")
        self.paint(todo & ~is_skin & beyond & ~left, "right-shoe")

    def _fill(self) -> None:
        """Give every unlabelled mask pixel the label of the nearest labelled pixel."""
        from scipy import ndimage

        todo = self.fg & (self.labels == 0)
        if not todo.any() or not (self.labels > 0).any():
            return
        _, (iy, ix) = ndimage.distance_transform_edt(self.labels == 0, return_indices=True)
        self.labels[todo] = self.labels[iy[todo], ix[todo]]
