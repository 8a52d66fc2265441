"""Offline labelers that need no weights: they read the parsing map, the pose and the pixels.

* garment and hair colours: named colours in OkLab over the (eroded) region; the share of the
  dominant colour (its purity) is the confidence;
* item presence from the parsing map (hat, sunglasses, dress, skirt vs trousers), only for labels
  the parser can output at all (a parser that never draws bags says nothing about bags);
* sleeve length from skin vs garment along the arms, bottoms length from how far the lower garment
  reaches down the legs, hair length from the hair region against chin, shoulders and chest;
* the shot type from which landmarks are in view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from annotate_anyone.annotation.colors import COLOR_NAMES, MULTICOLOR, color_distribution
from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.parsing import base as kp
from annotate_anyone.annotation.parsing.base import PersonView
from annotate_anyone.annotation.parsing.geometric import capsule
from annotate_anyone.annotation.taxonomy import ATR, Category

HAIR_FROM_COLOR = {
    "black": "black",
    "navy": "black",
    "brown": "brown",
    "beige": "blonde",
    "yellow": "blonde",
    "orange": "red",
    "red": "red",
    "gray": "gray",
    "white": "white",
}
HAT_PRIOR = {"hat": 0.4, "cap": 0.25, "beanie": 0.1, "helmet": 0.1, "beret": 0.05, "military cap": 0.1}


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def soft_bins(x: float, edges: Sequence[float], names: Sequence[str], sigma: float) -> dict[str, float]:
    """Probability of each bin ``(edges[i-1], edges[i])`` when ``x`` is known up to Gaussian noise ``sigma``."""
    bounds = [-math.inf, *edges, math.inf]
    sigma = max(sigma, 1e-6)
    return {n: _phi((bounds[i + 1] - x) / sigma) - _phi((bounds[i] - x) / sigma) for i, n in enumerate(names)}


def _presence(area_fraction: float, at: float = 0.004, scale: float = 0.002) -> float:
    """Probability that an item is there, from its share of the person's pixels."""
    return 1.0 / (1.0 + math.exp(-(area_fraction - at) / scale))


def estimate_shot_type(person: PersonView, size: tuple[int, int]) -> str:
    """full_body / nearly_full_body / upper_body / portrait / headshot from the landmarks in view."""
    w, h = size
    k = person.keypoints
    if k is None or len(k) < kp.NUM_KEYPOINTS:
        return "upper_body"

    def seen(*idx: int, vis: float = 0.5, slack: float = 0.02) -> bool:
        return all(k[i, 2] >= vis and -slack * w <= k[i, 0] <= (1 + slack) * w and k[i, 1] <= (1 + slack) * h
                   for i in idx)  # fmt: skip

    for fx0, fy0, fx1, fy1 in person.face_boxes[:1]:
        if (fx1 - fx0) * (fy1 - fy0) > 0.2 * w * h:
            return "headshot"
    if seen(kp.L_ANKLE, vis=0.4) or seen(kp.R_ANKLE, vis=0.4):
        return "full_body"
    if seen(kp.L_KNEE, vis=0.4) or seen(kp.R_KNEE, vis=0.4):
        return "nearly_full_body"
    if seen(kp.L_HIP, vis=0.2, slack=0.05) or seen(kp.R_HIP, vis=0.2, slack=0.05):
        return "upper_body"
    if seen(kp.L_SHOULDER) or seen(kp.R_SHOULDER):
        return "portrait"
    return "headshot"


class OfflineLabeler(Labeler):
    """Geometry-and-colour answers for the categories they can judge (see module docstring)."""

    name = "offline"
    model_version = "offline-1"

    def __init__(self, min_region: float = 0.004) -> None:
        self.min_region = min_region

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        if ctx.parsing is None:
            return []
        view = _View(ctx, self.min_region)
        out = []
        for cat in categories:
            dist = view.answer(cat)
            if dist is not None:
                out.append(Prediction.from_distribution(cat, dist, self.model_version))
        return out


class _View:
    """Per-person measurements shared by the category answers."""

    def __init__(self, ctx: PersonContext, min_region: float) -> None:
        self.ctx = ctx
        self.map = ctx.parsing
        assert self.map is not None
        self.counts = np.bincount(self.map.ravel(), minlength=18)
        self.fg_area = max(int(self.counts[1:].sum()), 1)
        self.min_region = min_region
        self.supported = ctx.parsing_labels or frozenset(range(18))
        self._cache: dict[str, dict[str, float] | None] = {}

    def region(self, *names: str) -> np.ndarray:
        return np.isin(self.map, [ATR[n] for n in names])

    def frac(self, *names: str) -> float:
        return float(sum(self.counts[ATR[n]] for n in names)) / self.fg_area

    def answer(self, cat: Category) -> dict[str, float] | None:
        handler = {
            "3.hair_color": self.hair_color,
            "3.hair_length": self.hair_length,
            "5.type": self.dress_type,
            "5.sleeve_length": lambda: self.sleeves(("dress",)),
            "6.color": lambda: self.colour(("upper-clothes",)),
            "6.sleeve_length": lambda: self.sleeves(("upper-clothes",)),
            "8.color": lambda: self.colour(("pants", "skirt")),
            "8.type": self.bottoms_type,
            "8.length": self.bottoms_length,
            "9.color": lambda: self.colour(("left-shoe", "right-shoe")),
            "10.type": self.hat,
            "11.type": self.bag,
            "12.present": lambda: self.present("belt"),
            "13.present": lambda: self.present("scarf"),
        }.get(cat.id)
        return None if handler is None else handler()

    # -- colours ---------------------------------------------------------------------------------
    def _pixels(self, names: tuple[str, ...]) -> np.ndarray:
        region = self.region(*names)
        if region.sum() > 400:
            from scipy import ndimage

            eroded = ndimage.binary_erosion(region, iterations=2)
            if eroded.sum() > 100:
                region = eroded
        return self.ctx.image[region][:, :3]

    def colour(self, names: tuple[str, ...]) -> dict[str, float] | None:
        if not all(ATR[n] in self.supported for n in names[:1]):
            return None
        p = _presence(self.frac(*names), at=self.min_region)
        shares = color_distribution(self._pixels(names)) if p > 0.05 else {}
        dist = {k: v * p for k, v in shares.items()}
        dist["n/a"] = 1.0 - p if shares else 1.0
        return dist

    def hair_color(self) -> dict[str, float] | None:
        shares = color_distribution(self._pixels(("hair",)))
        if not shares or self.frac("hair") < self.min_region:
            return None  # bald, covered or not parsed: no colour judgement
        dist: dict[str, float] = {}
        for name in (*COLOR_NAMES, MULTICOLOR):
            target = HAIR_FROM_COLOR.get(name, "dyed")
            dist[target] = dist.get(target, 0.0) + shares.get(name, 0.0)
        return dist

    # -- presence --------------------------------------------------------------------------------
    def present(self, name: str) -> dict[str, float] | None:
        if ATR[name] not in self.supported:
            return None
        p = _presence(self.frac(name), at=self.min_region)
        return {"yes": p, "no": 1.0 - p}

    def hat(self) -> dict[str, float] | None:
        if ATR["hat"] not in self.supported:
            return None
        p = _presence(self.frac("hat"), at=2 * self.min_region)
        return {**{k: v * p for k, v in HAT_PRIOR.items()}, "n/a": 1.0 - p}

    def bag(self) -> dict[str, float] | None:
        if ATR["bag"] not in self.supported:
            return None
        p = _presence(self.frac("bag"), at=self.min_region)
        return {"handbag": 0.4 * p, "backpack": 0.2 * p, "shoulder bag": 0.25 * p, "tote bag": 0.15 * p, "n/a": 1 - p}

    def dress_type(self) -> dict[str, float] | None:
        if ATR["dress"] not in self.supported:
            return None
        p = _presence(self.frac("dress"), at=2 * self.min_region)
        return {"dress": 0.7 * p, "sundress": 0.1 * p, "gown": 0.1 * p, "sheath dress": 0.1 * p, "n/a": 1.0 - p}

    def bottoms_type(self) -> dict[str, float] | None:
        skirt, pants = self.frac("skirt"), self.frac("pants")
        p = _presence(skirt + pants, at=2 * self.min_region)
        if skirt > pants:
            return {"skirt": p, "n/a": 1.0 - p}
        length = self.bottoms_length() or {}
        short = length.get("short", 0.0)
        colour = self.colour(("pants", "skirt")) or {}
        denim = colour.get("blue", 0.0) + colour.get("navy", 0.0)
        long_p = p * (1.0 - short)
        return {"shorts": p * short, "jeans": long_p * 0.6 * denim, "pants": long_p * (1 - 0.6 * denim), "n/a": 1 - p}

    # -- lengths ---------------------------------------------------------------------------------
    def _kp(self, i: int) -> np.ndarray | None:
        k = self.ctx.person.keypoints
        return None if k is None or len(k) < kp.NUM_KEYPOINTS else k[i, :2].astype(np.float32)

    def sleeves(self, garment: tuple[str, ...]) -> dict[str, float] | None:
        if self.ctx.person.keypoints is None or self.frac(*garment) < 2 * self.min_region:
            return None
        k = self.ctx.person.keypoints
        shape = self.map.shape
        shoulder_w = max(float(np.linalg.norm(k[kp.L_SHOULDER, :2] - k[kp.R_SHOULDER, :2])), 8.0)
        garment_mask = self.region(*garment)
        skin_mask = self.region("left-arm", "right-arm")
        upper_cov, fore_cov = [], []
        for sh, el, wr in ((kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST), (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST)):
            if min(k[sh, 2], k[el, 2]) < 0.3:
                continue
            for (a, b), sink in (((sh, el), upper_cov), ((el, wr), fore_cov)):
                if k[b, 2] < 0.3:
                    continue
                seg = capsule(shape, k[a, :2], k[b, :2], 0.12 * shoulder_w)
                g, s = float((seg & garment_mask).sum()), float((seg & skin_mask).sum())
                if g + s > 20:
                    sink.append(g / (g + s))
        if not upper_cov:
            return None
        up = float(np.mean(upper_cov))
        fore = float(np.mean(fore_cov)) if fore_cov else up
        return {
            "long sleeve": up * fore,
            "half sleeve": up * (1 - fore) * 0.3,
            "short sleeve": up * (1 - fore) * 0.7,
            "sleeveless": 1 - up,
        }

    def bottoms_length(self) -> dict[str, float] | None:
        lower = self.region("pants", "skirt", "dress") if self.frac("dress") > self.frac("upper-clothes") else None
        lower = self.region("pants", "skirt") if lower is None else lower
        hip, knee, ankle = self._kp(kp.L_HIP), self._kp(kp.L_KNEE), self._kp(kp.L_ANKLE)
        if lower.sum() < 50 or hip is None or knee is None or ankle is None:
            return None
        h = self.map.shape[0]
        ys = np.nonzero(lower)[0]
        bottom = float(np.percentile(ys, 98))
        if bottom >= h - 3 and ankle[1] > h:  # cut by the frame: length unknown
            return {"n/a": 1.0}
        span = max(float(ankle[1] - hip[1]), 1.0)
        t = (bottom - hip[1]) / span
        knee_t = float((knee[1] - hip[1]) / span)
        edges = [0.6 * knee_t, knee_t + 0.1, 0.5 * (knee_t + 1) + 0.15]
        return soft_bins(t, edges, ["short", "knee-length", "midi", "long"], sigma=0.06)

    def hair_length(self) -> dict[str, float] | None:
        hair = self.region("hair")
        if hair.sum() < 30 or self.ctx.person.keypoints is None:
            return None
        face = self.region("face")
        k = self.ctx.person.keypoints
        ys = np.nonzero(hair)[0]
        bottom = float(np.percentile(ys, 97))
        face_rows = np.nonzero(face.any(1))[0]
        eye_y = float((k[kp.L_EYE, 1] + k[kp.R_EYE, 1]) / 2)
        chin = float(np.percentile(np.nonzero(face)[0], 90)) if face_rows.size else eye_y + 40
        shoulder = float((k[kp.L_SHOULDER, 1] + k[kp.R_SHOULDER, 1]) / 2)
        hip = float((k[kp.L_HIP, 1] + k[kp.R_HIP, 1]) / 2)
        chest = shoulder + 0.35 * (hip - shoulder)
        scale = max(chin - eye_y, 10.0)
        return soft_bins(
            bottom, [chin + 0.1 * scale, shoulder, chest], ["short", "above shoulders", "above chest", "below chest"],
            sigma=0.25 * scale,
        )  # fmt: skip
