"""Offline human parsing from geometry and colour: person mask + pose landmarks + face box, no weights.

Regions are drawn as capsules and polygons around the skeleton, intersected with the person mask,
and split by colour: a skin model sampled from the face separates bare arms/legs from sleeves and
trousers, a hair colour sampled beside the face separates hair from a hat, and an open gap between
the knees separates trousers from a skirt (a skirt the colour of the top becomes a dress). Whatever
of the mask is left takes the label of the nearest labelled pixel. Coarse by construction: it cannot
see bags, belts or scarves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate_anyone.annotation.colors import delta, oklab
from annotate_anyone.annotation.parsing import base as kp
from annotate_anyone.annotation.parsing.base import Parser, PersonView
from annotate_anyone.annotation.taxonomy import ATR

Point = np.ndarray


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
        std = np.maximum(samples.std(0), np.array([0.09, 0.015, 0.015], np.float32))
        return cls(mean.astype(np.float32), std.astype(np.float32))


class GeometricParser(Parser):
    """Parsing from mask + pose + face; ``min_visibility`` gates the limbs that are drawn."""

    model_version = "geometric-1"
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

    def __init__(self, min_visibility: float = 0.3, hair_delta: float = 0.09) -> None:
        self.min_visibility = min_visibility
        self.hair_delta = hair_delta

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
        out[y0:y1, x0:x1] = _Scene(crop, keypoints, faces, mask, self).label()
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
        self.lab = oklab(rgb)
        self.kp = keypoints
        self.cfg = cfg
        self.labels = np.zeros(self.shape, np.uint8)
        ls, rs = self.pt(kp.L_SHOULDER), self.pt(kp.R_SHOULDER)
        self.shoulder_w = max(float(np.linalg.norm(ls - rs)), 8.0)
        lh, rh = self.pt(kp.L_HIP), self.pt(kp.R_HIP)
        self.torso_len = max(float(np.linalg.norm((ls + rs) / 2 - (lh + rh) / 2)), self.shoulder_w * 0.8)
        self.face = self._face_box(faces)
        self.fg = mask if mask is not None else self._skeleton_mask()

    # -- geometry helpers -------------------------------------------------------------------------
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
        nose = self.pt(kp.NOSE)
        for fx0, fy0, fx1, fy1 in sorted(faces, key=lambda f: (f[0] - nose[0]) ** 2 + (f[1] - nose[1]) ** 2):
            if fx0 - 0.2 * (fx1 - fx0) <= nose[0] <= fx1 + 0.2 * (fx1 - fx0):
                return fx0, fy0, fx1, fy1 + 0.12 * (fy1 - fy0)  # detector boxes stop short of the chin
        ear_w = float(np.linalg.norm(self.pt(kp.L_EAR) - self.pt(kp.R_EAR)))
        fw = max(ear_w * 1.1, self.shoulder_w * 0.35)
        eyes_y = (self.pt(kp.L_EYE)[1] + self.pt(kp.R_EYE)[1]) / 2
        return nose[0] - fw / 2, eyes_y - 0.45 * fw, nose[0] + fw / 2, eyes_y + 0.95 * fw

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
        skin = self._skin_model()
        is_skin = skin.is_skin(self.lab)
        self._head(is_skin)
        self._arms(is_skin)
        self._lower(is_skin)
        self._torso()
        self._fill()
        return self.labels

    def _skin_model(self) -> _Skin:
        fx0, fy0, fx1, fy1 = self.face
        cx, cy = (fx0 + fx1) / 2, fy0 + 0.55 * (fy1 - fy0)
        inner = ellipse(self.shape, np.array([cx, cy]), 0.25 * (fx1 - fx0), 0.25 * (fy1 - fy0)) & self.fg
        return _Skin.fit(self.lab[inner])

    def _head(self, is_skin: np.ndarray) -> None:
        fx0, fy0, fx1, fy1 = self.face
        fw, fh = fx1 - fx0, fy1 - fy0
        center = np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2], np.float32)
        h, w = self.shape
        ys, xs = np.ogrid[:h, :w]
        face_ellipse = ellipse(self.shape, center, 0.5 * fw, 0.55 * fh)
        inner = ellipse(self.shape, center, 0.36 * fw, 0.4 * fh)
        shoulder_y = min(self.pt(kp.L_SHOULDER)[1], self.pt(kp.R_SHOULDER)[1])
        head_zone = (xs >= fx0 - 0.45 * fw) & (xs <= fx1 + 0.45 * fw) & (ys <= fy1) & self.fg
        # Hair colour: beside the face (temples), else above it; never skin.
        temples = (
            (((xs >= fx0 - 0.3 * fw) & (xs < fx0 + 0.05 * fw)) | ((xs > fx1 - 0.05 * fw) & (xs <= fx1 + 0.3 * fw)))
            & (ys >= fy0 + 0.25 * fh)
            & (ys <= fy0 + 0.75 * fh)
            & self.fg
            & ~is_skin
            & ~inner
        )
        above = head_zone & (ys < fy0) & ~is_skin
        sample = self.lab[temples] if temples.sum() >= 30 else self.lab[above]
        face = face_ellipse & self.fg & (is_skin | inner)
        self.paint(face, "face")
        if len(sample) == 0:
            return
        hair_color = np.median(sample, 0)
        hairlike = delta(self.lab, hair_color) < self.cfg.hair_delta
        rest = head_zone & (self.labels == 0)
        top = rest & (ys < fy0 + 0.1 * fh)
        not_hair_top = top & ~hairlike & ~is_skin
        if top.sum() > 0 and not_hair_top.sum() > 0.45 * top.sum():  # the crown is not hair-coloured: a hat
            hat = not_hair_top | (top & (ys < fy0 - 0.15 * fh))
            self.paint(hat, "hat")
        self.paint(rest & is_skin & (ys > fy0), "face")  # ears
        # Above the eyes everything left is hair; lower down only hair-coloured pixels (not a collar).
        self.paint(rest & ((ys < fy0 + 0.35 * fh) | hairlike), "hair")
        self._sunglasses(is_skin)
        # Long hair below the face: hair-coloured, not skin, connected to the head's hair.
        from scipy import ndimage

        hip_y = (self.pt(kp.L_HIP)[1] + self.pt(kp.R_HIP)[1]) / 2
        lateral = (xs >= center[0] - 1.1 * fw) & (xs <= center[0] + 1.1 * fw)
        low = self.fg & hairlike & ~is_skin & lateral & (ys > fy1 - 0.1 * fh) & (ys < hip_y) & (self.labels == 0)
        seeds = self.labels == ATR["hair"]
        comp, n = ndimage.label(low | seeds)
        if n:
            keep = np.unique(comp[seeds & (comp > 0)])
            self.paint(np.isin(comp, keep) & low, "hair")
        neck = (ys > fy1 - 0.1 * fh) & (ys < shoulder_y) & (np.abs(xs - center[0]) < 0.45 * fw) & is_skin
        self.paint(neck, "face")

    def _sunglasses(self, is_skin: np.ndarray) -> None:
        if not self.visible(kp.L_EYE, kp.R_EYE):
            return
        le, re = self.pt(kp.L_EYE), self.pt(kp.R_EYE)
        r = max(float(np.linalg.norm(le - re)) * 0.35, 2.0)
        band = (capsule(self.shape, le, re, r)) & self.fg
        dark = band & (self.lab[..., 0] < 0.3) & ~is_skin
        if band.sum() > 10 and dark.sum() > 0.55 * band.sum():
            self.labels[dark] = ATR["sunglasses"]

    def _arms(self, is_skin: np.ndarray) -> None:
        for side, (sh, el, wr, hand), label in (
            ("left", (kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST, kp.L_HAND), "left-arm"),
            ("right", (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST, kp.R_HAND), "right-arm"),
        ):
            del side
            hand_pt = self.kp[list(hand), :2].mean(0)
            segments = [(self.pt(sh), self.pt(el), 0.17, (sh, el)), (self.pt(el), self.pt(wr), 0.14, (el, wr)),
                        (self.pt(wr), hand_pt, 0.13, (wr,))]  # fmt: skip
            for p0, p1, rel, needed in segments:
                if not self.visible(*needed):
                    continue
                region = capsule(self.shape, p0, p1, rel * self.shoulder_w)
                self.paint(region & is_skin, label)
                self.paint(region & ~is_skin, "upper-clothes")

    def _torso(self) -> None:
        ls, rs, lh, rh = (self.pt(i) for i in (kp.L_SHOULDER, kp.R_SHOULDER, kp.L_HIP, kp.R_HIP))
        out_l = (ls - rs) / np.linalg.norm(ls - rs) * 0.22 * self.shoulder_w
        up = np.array([0.0, -0.25 * self.torso_len], np.float32)
        torso = polygon(self.shape, [ls + out_l + up, rs - out_l + up, rh - out_l * 0.8, lh + out_l * 0.8])
        self.paint(torso, "upper-clothes")

    def _lower(self, is_skin: np.ndarray) -> None:
        lh, rh = self.pt(kp.L_HIP), self.pt(kp.R_HIP)
        h, w = self.shape
        if min(lh[1], rh[1]) >= h:  # hips below the frame: no lower body in view
            return
        hip_w = max(float(np.linalg.norm(lh - rh)), 0.5 * self.shoulder_w)
        ys, xs = np.ogrid[:h, :w]
        hip_y = (lh[1] + rh[1]) / 2
        legs = np.zeros(self.shape, bool)
        leg_side = {}
        for hip, knee, ankle, label in ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE, "left-leg"),
                                        (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE, "right-leg")):  # fmt: skip
            region = capsule(self.shape, self.pt(hip), self.pt(knee), 0.55 * hip_w)
            if self.visible(knee, ankle):
                region |= capsule(self.shape, self.pt(knee), self.pt(ankle), 0.35 * hip_w)
            leg_side[label] = region
            legs |= region
        # Garment colours of the top (upper torso) and the thighs decide the waist line.
        ls, rs = self.pt(kp.L_SHOULDER), self.pt(kp.R_SHOULDER)
        upper = polygon(self.shape, [ls, rs, (rs + rh) / 2, (ls + lh) / 2]) & self.fg & ~is_skin
        kl, kr = self.pt(kp.L_KNEE), self.pt(kp.R_KNEE)
        thighs = capsule(self.shape, (lh + kl) / 2, kl, 0.3 * hip_w) | capsule(
            self.shape, (rh + kr) / 2, kr, 0.3 * hip_w
        )
        thighs &= self.fg & ~is_skin
        if upper.sum() < 20 or thighs.sum() < 20:
            below = legs & (ys > hip_y)
            self.paint(below & is_skin, "left-leg")
            self.paint(below & ~is_skin, "pants")
            return
        top_c, low_c = np.median(self.lab[upper], 0), np.median(self.lab[thighs], 0)
        d_top, d_low = delta(self.lab, top_c), delta(self.lab, low_c)
        band = (ys > hip_y - 0.25 * self.torso_len) & (ys < hip_y + 0.2 * self.torso_len)
        lower_zone = legs & ((ys >= hip_y + 0.2 * self.torso_len) | (band & (d_low < d_top)))
        garment = lower_zone & ~is_skin
        # Feet first (shoes sit inside the shin capsules).
        for heel, toe, ankle, label in ((kp.L_HEEL, kp.L_TOE, kp.L_ANKLE, "left-shoe"),
                                        (kp.R_HEEL, kp.R_TOE, kp.R_ANKLE, "right-shoe")):  # fmt: skip
            if not self.visible(heel, toe, ankle):
                continue
            foot_len = max(float(np.linalg.norm(self.pt(heel) - self.pt(toe))), 0.2 * hip_w)
            foot = capsule(self.shape, self.pt(heel), self.pt(toe), 0.45 * foot_len)
            foot |= capsule(self.shape, self.pt(ankle), self.pt(heel), 0.4 * foot_len)
            foot &= ys > self.pt(ankle)[1] - 0.35 * foot_len
            self.paint(foot & ~is_skin, label)
        skirt_like = self._skirt_like(kl, kr, lh, rh)
        same_as_top = float(delta(top_c, low_c)) < 0.06
        lower_label = ("dress" if same_as_top else "skirt") if skirt_like else "pants"
        if lower_label == "skirt" or lower_label == "dress":  # the garment spans the gap between the legs
            hull = polygon(self.shape, [lh, rh, kr, kl])
            garment |= hull & ~is_skin & (ys >= hip_y)
        self.paint(garment, lower_label)
        for label, region in leg_side.items():
            self.paint(region & is_skin & (ys > hip_y), label)
        if lower_label == "dress":
            self.paint(upper, "dress")
            self._dress_top = True

    def _skirt_like(self, kl: Point, kr: Point, lh: Point, rh: Point) -> bool:
        """Whether the space between the thighs is filled (skirt/dress) rather than open (trousers)."""
        if not (self.visible(kp.L_KNEE) and self.visible(kp.R_KNEE)):
            return False
        h, w = self.shape
        samples = []
        for t in np.linspace(0.55, 1.0, 10):
            mid = (lh + rh) / 2 * (1 - t) + (kl + kr) / 2 * t
            x, y = int(round(mid[0])), int(round(mid[1]))
            if 0 <= x < w and 0 <= y < h:
                samples.append(bool(self.fg[y, x]))
        return len(samples) >= 5 and float(np.mean(samples)) > 0.7

    def _fill(self) -> None:
        """Give every unlabelled mask pixel the label of the nearest labelled pixel."""
        from scipy import ndimage

        todo = self.fg & (self.labels == 0)
        if not todo.any() or not (self.labels > 0).any():
            return
        _, (iy, ix) = ndimage.distance_transform_edt(self.labels == 0, return_indices=True)
        self.labels[todo] = self.labels[iy[todo], ix[todo]]
