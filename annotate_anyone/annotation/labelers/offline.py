"""Offline labelers that need no weights: they read the parsing map, the pose and the pixels.

* garment and hair colours: named colours in OkLab over the (eroded) region; the share of the
  dominant colour (its purity) is the confidence;
* item presence from the parsing map (hat, sunglasses, dress, skirt vs trousers), only for labels
  the parser can output at all (a parser that never draws bags says nothing about bags);
* sleeve length: where garment turns to arm skin along shoulder-elbow-wrist (one step fitted to
  both arms, placed within the sampling gap by the garment share of the samples either side), in arm
  units against the elbow and the wrist; when the two arms disagree, the arm with the cleaner step
  weighs more;
* bottoms: where the lower garment ends along hip-knee-ankle (the same step fit), whether its frame
  shows the hips at all, and whether it fills the midline between the legs down to its hem (a
  skirt) or leaves it at a crotch above the hem (trousers, shorts);
* hair length: the lowest row of the hair connected to the head, against chin, shoulder joints and
  armpits (from the pose, not from the parser's face region, which includes the neck); below the
  chin the hair is followed by its colour in the image (sampled on the parsed hair above the eyes),
  not by the parser's hair, which paints blond hair as face and dark tops as hair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotate_anyone.annotation.colors import COLOR_NAMES, MULTICOLOR, color_distribution
from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.parsing import base as kp
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
MOUTH_L, MOUTH_R = 9, 10  # MediaPipe pose mouth corners
LIMB_VISIBLE = 0.3
SLEEVES = ("sleeveless", "short sleeve", "half sleeve", "long sleeve")
SLEEVE_EDGES = (0.15, 0.75, 1.35)  # in arm units: 0 shoulder joint, 1 elbow, 2 wrist
SLEEVE_RADIUS = 0.05  # sampling disk along the arm, in shoulder widths
MAX_JUNK = 0.6
LIMB_START, LIMB_END = -0.1, 2.2  # where a garment can end along a limb (past the hand or foot: over it)
HEMS = ("short", "knee-length", "midi", "long")
HEM_EDGES = (0.8, 1.25, 1.7)  # in leg units: 0 hip joint, 1 knee, 2 ankle
HEM_RADIUS = 0.08
MIDLINE_SKIRT_ODDS = 3.0  # garment filling the midline down to the hem: skirt over legs, 3 to 1
SHORT_HEM = 1.25  # shorts end above or at the knee, trousers past the middle of the shin
HAIR_LENGTHS = ("short", "above shoulders", "above chest", "below chest")
# Hair bottom in units of chin (0) to shoulder joints (1): short ends within the upper third of the
# neck, above shoulders before the top of the shoulders (about 0.8), above chest before the armpits.
HAIR_SHORT, HAIR_SHOULDERS = 0.33, 0.8
HAIR_DELTA, HAIR_SPREAD_CAP = 0.09, 0.2  # OkLab distance within which a pixel has the hair's colour
HAIR_ROW = 0.06  # a row of hair below the chin is at least this wide (shoulder widths): not a stray edge
# Typical proportions in eye-to-mouth distances (MediaPipe landmarks on the dev set's upright people):
# chin to shoulder joints 1.5, shoulder width 4.7; a neck under 0.5 is a bent head, under 3 wide a profile.
NECK_EMS, MIN_NECK_EMS, SHOULDER_EMS = 1.5, 0.5, 3.0
HAIR_REACH_EMS = 1.5  # hair beside the face: within this of the eyes' midline (a face is 2.4 wide)
HAT_PRIOR = {"hat": 0.4, "cap": 0.25, "beanie": 0.1, "helmet": 0.1, "beret": 0.05, "military cap": 0.1}


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def soft_bins(
    x: float,
    edges: Sequence[float],
    names: Sequence[str],
    sigma: float,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> dict[str, float]:
    """Probability of each bin ``(edges[i-1], edges[i])`` when ``x`` is known up to Gaussian noise ``sigma``.

    With ``lo``/``hi`` the true value is known to lie in [lo, hi] (the Gaussian is truncated there), so a
    noisy measurement does not pour its mass into the open-ended first and last bins.
    """
    bounds = [lo, *edges, hi]
    sigma = max(sigma, 1e-6)
    mass = [_phi((bounds[i + 1] - x) / sigma) - _phi((bounds[i] - x) / sigma) for i in range(len(names))]
    total = sum(mass) if math.isfinite(lo) or math.isfinite(hi) else 1.0
    return {n: m / total if total > 0 else 1.0 / len(names) for n, m in zip(names, mass, strict=True)}


def _presence(area_fraction: float, at: float = 0.004, scale: float = 0.002) -> float:
    """Probability that an item is there, from its share of the person's pixels."""
    return 1.0 / (1.0 + math.exp(-(area_fraction - at) / scale))


@dataclass(frozen=True, slots=True)
class _Fit:
    """Where a garment ends along limbs: ``end`` (limb units), ``last`` (furthest sample: an end past it
    is only a lower bound), ``rmse`` of the step fit, and each side's own fit when both were seen."""

    end: float
    last: float
    rmse: float
    sides: tuple[_Fit, ...] = ()


def _step_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float, float] | None:
    """Least-squares step (1 before the end, 0 after) through (position, garment share) samples:
    the end, the last position and the root-mean-square error; ``None`` with fewer than 3 samples."""
    if len(points) < 3:
        return None
    ts = np.array([t for t, _ in points])
    gs = np.array([g for _, g in points])
    best_cost, best_end = math.inf, 0.0
    for end in [ts.min() - 0.05, *sorted({round(t + 0.05, 2) for t in ts})]:
        cost = float(np.where(ts < end, (1 - gs) ** 2, gs**2).sum())
        if cost < best_cost - 1e-9:
            best_cost, best_end = cost, end
    return _refine_end(ts, gs, best_end), float(ts.max()), math.sqrt(best_cost / len(points))


def _refine_end(ts: np.ndarray, gs: np.ndarray, end: float) -> float:
    """Place the end within the gap between the samples either side of it: each sample sees a window as
    wide as the spacing, so a step at e gives the two samples garment shares summing to (e - t_before) /
    spacing + 1/2. Ends at the first or past the last sample stay where the fit put them."""
    before, after = ts[ts < end], ts[ts >= end]
    if not len(before) or not len(after):
        return end
    t0, t1 = float(before.max()), float(after.min())
    gap = t1 - t0
    if gap > 0.1 + 1e-6:  # samples skipped around the end: no better place than the middle
        return end
    share = float(gs[np.isclose(ts, t0)].mean() + gs[np.isclose(ts, t1)].mean())
    return float(np.clip(t0 - gap / 2 + gap * share, t0, t1))


class OfflineLabeler(Labeler):
    """Geometry-and-colour answers for the categories they can judge (see module docstring)."""

    name = "offline"
    model_version = "offline-4"

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

    # -- lengths ---------------------------------------------------------------------------------
    def _limb_profile(
        self, joints: tuple[int, int, int], inside: Sequence[int], bare: Sequence[int], radius: float
    ) -> list[tuple[float, float]]:
        """Share of garment (``inside``) among garment and skin (``bare``) pixels along a limb.

        The limb is the polyline root-middle-end (shoulder-elbow-wrist, hip-knee-ankle), sampled every
        0.1 of a segment: t = 0 at the root, 1 at the middle joint, 2 at the end. Sampling stops where
        a joint is not seen or the limb leaves the frame; a sample with too little garment or skin
        around it (background, hair, a hand in front) is skipped.
        """
        k = self.ctx.person.keypoints
        assert k is not None
        h, w = self.map.shape
        a, b, c = (k[j, :2].astype(np.float64) for j in joints)
        out: list[tuple[float, float]] = []
        r = max(radius, 1.5)
        for step in range(21):
            t = step / 10
            if min(k[j, 2] for j in (joints if t > 1 else joints[:2])) < LIMB_VISIBLE:
                break
            x, y = a + t * (b - a) if t <= 1 else b + (t - 1) * (c - b)
            if not (0 <= x < w and 0 <= y < h):
                break
            y0, y1, x0, x1 = int(max(y - r, 0)), int(min(y + r + 1, h)), int(max(x - r, 0)), int(min(x + r + 1, w))
            yy, xx = np.ogrid[y0:y1, x0:x1]
            patch = self.map[y0:y1, x0:x1][(xx - x) ** 2 + (yy - y) ** 2 <= r * r]
            g, s = int(np.isin(patch, inside).sum()), int(np.isin(patch, bare).sum())
            if g + s >= 0.3 * patch.size and g + s > 0:
                out.append((t, g / (g + s)))
        return out

    def _garment_end(
        self, joints: Sequence[tuple[int, int, int]], inside: Sequence[int], bare: Sequence[int], radius: float
    ) -> _Fit | None:
        """Where a garment ends along the limbs (both sides pooled: sleeves and trouser legs match),
        with the same fit on each side alone (``sides``: they disagree when the parse fails on one)."""
        profiles = [self._limb_profile(j, inside, bare, radius) for j in joints]
        pooled = _step_fit([p for prof in profiles for p in prof])
        if pooled is None:
            return None
        sides = tuple(_Fit(*f) for f in map(_step_fit, profiles) if f is not None)
        return _Fit(*pooled, sides=sides if len(sides) >= 2 else ())

    @classmethod
    def _end_distribution(cls, fit: _Fit, edges: Sequence[float], names: Sequence[str]) -> dict[str, float]:
        """Classes of where the garment ends: half from the pooled fit, half from the sides' own fits
        (sides that disagree split the confidence, weighted by 1 / (0.1 + rmse): a side whose profile is
        far from a step is more likely a failed parse), each blurred by its fit error and mixed with a
        uniform share as large as that error (a profile unlike a step is likely a failed parse).

        A garment seen as far as the limb is seen (the end beyond the last sample) ends anywhere from
        there to past the limb's end, uniformly.
        """
        if fit.sides:
            parts = [cls._end_distribution(f, edges, names) for f in fit.sides]
            weights = np.array([1.0 / (0.1 + f.rmse) for f in fit.sides])  # the cleaner step counts more
            own = cls._end_distribution(_Fit(fit.end, fit.last, fit.rmse), edges, names)
            return {n: 0.5 * own[n] + 0.5 * float(np.average([p[n] for p in parts], weights=weights)) for n in names}
        sigma = 0.08 + 0.5 * fit.rmse
        if fit.end <= fit.last:
            dist = soft_bins(fit.end, edges, names, sigma, LIMB_START, LIMB_END)
        else:
            ends = np.linspace(fit.last + 0.05, LIMB_END, 12)
            parts = [soft_bins(float(e), edges, names, sigma, LIMB_START, LIMB_END) for e in ends]
            dist = {n: float(np.mean([p[n] for p in parts])) for n in names}
        # A profile far from a clean step is likely a failed parse: that share of belief says nothing.
        junk = min(MAX_JUNK, fit.rmse)
        return {n: (1 - junk) * v + junk / len(names) for n, v in dist.items()}

    def _shoulder_width(self) -> float:
        k = self.ctx.person.keypoints
        assert k is not None
        return max(float(np.linalg.norm(k[kp.L_SHOULDER, :2] - k[kp.R_SHOULDER, :2])), 8.0)

    def sleeves(self, garment: tuple[str, ...]) -> dict[str, float] | None:
        """Where the sleeve ends along the arm (0 shoulder, 1 elbow, 2 wrist), from garment vs arm skin."""
        if self.ctx.person.keypoints is None or self.frac(*garment) < 2 * self.min_region:
            return None
        inside = [ATR[n] for n in ("upper-clothes", "dress")]
        bare = [ATR["left-arm"], ATR["right-arm"]]
        arms = ((kp.L_SHOULDER, kp.L_ELBOW, kp.L_WRIST), (kp.R_SHOULDER, kp.R_ELBOW, kp.R_WRIST))
        fit = self._garment_end(arms, inside, bare, SLEEVE_RADIUS * self._shoulder_width())
        if fit is None:
            return None
        return self._end_distribution(fit, SLEEVE_EDGES, SLEEVES)

    def _hem(self) -> _Fit | None:
        """Where the lower garment ends along the legs (0 hip, 1 knee, 2 ankle)."""
        if self.ctx.person.keypoints is None:
            return None
        inside = [ATR[n] for n in ("pants", "skirt", "dress")]
        bare = [ATR[n] for n in ("left-leg", "right-leg", "left-shoe", "right-shoe")]
        legs = ((kp.L_HIP, kp.L_KNEE, kp.L_ANKLE), (kp.R_HIP, kp.R_KNEE, kp.R_ANKLE))
        return self._garment_end(legs, inside, bare, HEM_RADIUS * self._shoulder_width())

    def _lower_visible(self) -> float:
        """Probability that the frame shows the lower garment at all (the hips and some leg below them)."""
        k = self.ctx.person.keypoints
        if k is None:
            return 1.0 if self.frac("pants", "skirt") > 2 * self.min_region else 0.0
        h = self.map.shape[0]
        hip_y = float(min(k[kp.L_HIP, 1], k[kp.R_HIP, 1]))
        below = (h - hip_y) / self._shoulder_width()  # frame left below the hip joints, in shoulder widths
        return 1.0 / (1.0 + math.exp(-(below - 0.2) / 0.06))

    def bottoms_length(self) -> dict[str, float] | None:
        hem = self._hem()
        if hem is None or self.frac("pants", "skirt", "dress") < 2 * self.min_region:
            return None
        dist = self._end_distribution(hem, HEM_EDGES, HEMS)
        p = _presence(self.frac("pants", "skirt"), at=2 * self.min_region) * self._lower_visible()
        return {**{k: v * p for k, v in dist.items()}, "n/a": 1.0 - p}

    def _crotch(self) -> float | None:
        """How far down the legs (0 hip, 1 knee, 2 ankle) the lower garment fills the midline between them.

        Trousers and shorts leave it at the crotch, well above their hems; a skirt fills it to the hem.
        """
        k = self.ctx.person.keypoints
        if k is None or min(k[i, 2] for i in (kp.L_HIP, kp.R_HIP, kp.L_KNEE, kp.R_KNEE)) < LIMB_VISIBLE:
            return None
        h, w = self.map.shape
        low = np.isin(self.map, [ATR["pants"], ATR["skirt"], ATR["dress"]])
        ankles = min(k[kp.L_ANKLE, 2], k[kp.R_ANKLE, 2]) >= LIMB_VISIBLE
        started, end = False, 0.0
        for step in range(21 if ankles else 11):
            t = step / 10
            if t <= 1:
                j0, j1, f = (kp.L_HIP, kp.R_HIP), (kp.L_KNEE, kp.R_KNEE), t
            else:
                j0, j1, f = (kp.L_KNEE, kp.R_KNEE), (kp.L_ANKLE, kp.R_ANKLE), t - 1
            x, y = sum(k[a, :2] + f * (k[b, :2] - k[a, :2]) for a, b in zip(j0, j1, strict=True)) / 2
            if not (0 <= x < w and 0 <= y < h):
                break
            inside = bool(low[int(y), int(x)])
            if inside:
                started, end = True, t + 0.05
            elif started or t > 0.15:  # the first run of garment, allowing a belt or top at the hip line
                break
        return end

    def _skirt_share(self, hem: _Fit | None) -> float:
        """Probability that the lower garment is one piece around both legs (skirt) rather than two legs.

        A crotch seen well above the hem makes two legs; garment along the midline down past the knees
        makes a skirt more likely (3 to 1: legs pressed together fill it too), weighed against the
        parser's own vote (skirt vs pants pixels); otherwise (a frame cutting the thighs) the vote decides.
        """
        skirt, pants = self.frac("skirt"), self.frac("pants")
        vote = 0.1 + 0.8 * skirt / (skirt + pants) if skirt + pants > 0 else 0.5
        crotch = self._crotch()
        if hem is None or crotch is None:
            return vote
        reach = min(hem.end, hem.last + 0.05)  # how far down the garment is seen
        if reach - crotch >= 0.2:
            return 0.1
        if crotch >= 0.9 and crotch >= reach - 0.1:  # also legs pressed together: evidence, not proof
            odds = MIDLINE_SKIRT_ODDS * vote / (1 - vote)
            return odds / (1 + odds)
        return vote

    def bottoms_type(self) -> dict[str, float] | None:
        """Trousers, shorts or skirt from the hem along the legs and the gap between them."""
        p = _presence(self.frac("skirt", "pants"), at=2 * self.min_region) * self._lower_visible()
        hem = self._hem()
        if hem is None:
            short = 0.25  # no leg seen below the hips: length unknown, most bottoms are long
        elif hem.end > hem.last:  # garment all the way the legs are seen: short only if the frame cuts above the hem
            short = 0.25 * _phi((SHORT_HEM - hem.last) / 0.15)
        else:
            short = _phi((SHORT_HEM - hem.end) / (0.08 + 0.5 * hem.rmse))
        skirt = self._skirt_share(hem)
        colour = self.colour(("pants", "skirt")) or {}
        denim = colour.get("blue", 0.0) + colour.get("navy", 0.0)
        legs = p * (1 - skirt)
        long_p = legs * (1 - short)
        return {
            "skirt": p * skirt,
            "shorts": legs * short,
            "jeans": long_p * 0.8 * denim,
            "leggings": long_p * 0.05,
            "pants": long_p * (0.95 - 0.8 * denim),
            "n/a": 1 - p,
        }

    def _hair_colored(self, eye: float, mouth: float, shoulder: float, cx: float, sw: float) -> np.ndarray | None:
        """Pixels of the hair's own colour around head and shoulders, or ``None`` without a colour to go by.

        The colour is sampled on the parsed hair above the eyes (its spread, up to a cap, widens the
        match for highlights and shade). A pixel counts when it is on the person, of that colour or
        parsed as hair (a good parser's hair is kept; a poor one's passes the same tests), closer to the hair
        than to the face's skin (blond hair is nearly skin-coloured) and, below the shoulder joints,
        than to the chest (a top of the hair's colour stays top); never on the face between eyes and
        chin, the front of the neck or the parsed arms. The parser paints long blond hair as face and
        cuts hair off at the shoulders; the colours decide here.
        """
        from annotate_anyone.annotation.colors import oklab

        k = self.ctx.person.keypoints
        assert k is not None
        h, w = self.map.shape
        em = mouth - eye
        y0, y1 = int(max(eye - 4 * em, 0)), int(min(shoulder + 1.5 * sw, h))
        x0, x1 = int(max(cx - sw, 0)), int(min(cx + sw + 1, w))
        if y1 - y0 < 4 or x1 - x0 < 4:
            return None
        lab = oklab(self.ctx.image[y0:y1, x0:x1, :3])
        sub = self.map[y0:y1, x0:x1]
        ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
        ex0, ex1 = sorted((float(k[kp.L_EYE, 0]), float(k[kp.R_EYE, 0])))
        crown = (sub == ATR["hair"]) & (ys < eye)
        skin = (xs >= ex0) & (xs <= ex1) & (ys > eye + 0.2 * em) & (ys < mouth)
        if crown.sum() < 20 or skin.sum() < 4:
            return None
        hair_c = np.median(lab[crown], 0)
        d_hair = np.linalg.norm(lab - hair_c, axis=-1)
        spread = min(float(np.percentile(d_hair[crown], 75)), HAIR_SPREAD_CAP)
        d_skin = np.linalg.norm(lab - np.median(lab[skin], 0), axis=-1)
        like = ((d_hair < max(HAIR_DELTA, spread)) | (sub == ATR["hair"])) & (d_hair < d_skin)
        like &= (sub > 0) & ~np.isin(sub, [ATR["left-arm"], ATR["right-arm"]])
        chest = (np.abs(xs - cx) < 0.25 * sw) & (ys > shoulder + 0.3 * sw)
        if chest.sum() >= 20:
            d_top = np.linalg.norm(lab - np.median(lab[chest], 0), axis=-1)
            like &= (d_hair < d_top - 0.02) | (ys < shoulder)
        fx, fw, chin = (ex0 + ex1) / 2, max(ex1 - ex0, em), mouth + 0.8 * em
        face = ((xs - fx) / (0.9 * fw)) ** 2 + ((ys - (eye + chin) / 2) / ((chin - eye) / 2 + 0.2 * em)) ** 2 <= 1
        neck = (np.abs(xs - fx) < 0.5 * fw) & (ys >= chin) & (ys < shoulder)
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = like & ~face & ~neck
        return out

    def hair_length(self) -> dict[str, float] | None:
        """Where the hair ends against chin, shoulders and armpits (hair connected to the head only).

        Below the chin the hair is what has the hair's colour (``_hair_colored``), else the parsed hair,
        within a band beside the face that widens downwards.
        A pose without a neck (head bent forward, profile) takes the neck and the shoulder width from
        the head's size (eyes to mouth), at their typical proportions.
        """
        k = self.ctx.person.keypoints
        if (
            k is None
            or min(k[i, 2] for i in (kp.L_EYE, kp.R_EYE, MOUTH_L, MOUTH_R, kp.L_SHOULDER, kp.R_SHOULDER)) < 0.5
        ):
            return None  # fmt: skip
        h, w = self.map.shape
        eye = float(k[kp.L_EYE, 1] + k[kp.R_EYE, 1]) / 2
        mouth = float(k[MOUTH_L, 1] + k[MOUTH_R, 1]) / 2
        em = mouth - eye
        if em < 2.0:
            return None  # upside down or too small: no vertical scale
        chin = mouth + 0.8 * em  # the mouth sits about 0.55 of the way from the eyes to the chin
        shoulder = float(k[kp.L_SHOULDER, 1] + k[kp.R_SHOULDER, 1]) / 2
        sw = max(self._shoulder_width(), SHOULDER_EMS * em)
        unit = shoulder - chin
        if unit < MIN_NECK_EMS * em:
            unit = NECK_EMS * em
            shoulder = chin + unit
        cx = float(k[kp.L_SHOULDER, 0] + k[kp.R_SHOULDER, 0]) / 2
        hair = self.region("hair")
        ys, xs = np.ogrid[:h, :w]
        seed = hair & (ys < chin)
        if seed.sum() < 10:
            return None  # bald, covered or not parsed
        from scipy import ndimage

        colored = self._hair_colored(eye, mouth, shoulder, cx, sw)
        if colored is not None:
            hair = seed | colored
        # Hair hangs beside the face and drapes outwards at most at 45 degrees below the chin; what
        # joins it further out (a collar, a dark top's shoulders, a helmet ring) is not hair.
        fx = float(k[kp.L_EYE, 0] + k[kp.R_EYE, 0]) / 2
        band = (ys < chin) | (np.abs(xs - fx) < HAIR_REACH_EMS * em + (ys - chin))
        near = hair & band & (np.abs(xs - cx) < 0.9 * sw)
        cc, _ = ndimage.label(near)
        ids = np.unique(cc[seed & near])
        strands = np.isin(cc, ids[ids > 0])
        rows = strands.sum(1)
        centre = strands[:, max(int(cx - 0.1 * sw), 0) : max(int(cx + 0.1 * sw), 1)].any(1)
        frontal = bool(self.ctx.person.face_boxes)
        bottom, gap = chin, 0
        for y in range(int(max(chin, 0)), h):
            if frontal and y > shoulder and centre[y]:
                break  # "hair" across the middle of the chest of a frontal person is the top, not hair
            if rows[y] >= max(2.0, HAIR_ROW * sw):
                bottom, gap = float(y), 0
            else:
                gap += 1
                if gap > 0.15 * sw:
                    break
        hip = float(k[kp.L_HIP, 1] + k[kp.R_HIP, 1]) / 2
        torso = hip - shoulder if min(k[kp.L_HIP, 2], k[kp.R_HIP, 2]) >= 0.3 and hip > shoulder else 1.2 * sw
        armpit = 1.0 + 0.25 * torso / unit
        return soft_bins((bottom - chin) / unit, [HAIR_SHORT, HAIR_SHOULDERS, armpit], HAIR_LENGTHS, sigma=0.15)
