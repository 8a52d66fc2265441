"""Per-person feature vectors for the learned heads.

``handmade-1``: for each body region of the parsing map, its share of the person, mean OkLab colour,
lightness spread, named-colour histogram, edge density (texture) and vertical extent; plus the
shot type. A VLM's pooled vision embedding is the other extractor (``vlm:<version>``), used when a
VLM is configured.
"""

from __future__ import annotations

import numpy as np

from annotate_anyone.annotation.colors import COLOR_NAMES, name_pixels, oklab
from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.taxonomy import ATR

HANDMADE = "handmade-1"
SHOT_TYPES = ("full_body", "nearly_full_body", "upper_body", "portrait", "headshot")
REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hat", ("hat",)),
    ("hair", ("hair",)),
    ("face", ("face", "sunglasses")),
    ("upper", ("upper-clothes",)),
    ("dress", ("dress",)),
    ("lower", ("pants", "skirt")),
    ("arms", ("left-arm", "right-arm")),
    ("legs", ("left-leg", "right-leg")),
    ("shoes", ("left-shoe", "right-shoe")),
    ("accessories", ("bag", "belt", "scarf")),
    ("person", tuple(n for n in ATR if n != "background")),
)
PER_REGION = 1 + 3 + 1 + len(COLOR_NAMES) + 1 + 2
DIM = PER_REGION * (len(REGIONS) + 1) + len(SHOT_TYPES)
MAX_PIXELS = 4000


def _region_features(lab: np.ndarray, names: np.ndarray, edges: np.ndarray, region: np.ndarray, area: int,
                     rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    out = np.zeros(PER_REGION, np.float32)
    idx = np.flatnonzero(region)
    if idx.size == 0:
        return out
    if idx.size > MAX_PIXELS:
        idx = rng.choice(idx, MAX_PIXELS, replace=False)
    px = lab.reshape(-1, 3)[idx]
    out[0] = region.sum() / max(area, 1)
    out[1:4] = px.mean(0)
    out[4] = px[:, 0].std()
    hist = np.bincount(names.ravel()[idx], minlength=len(COLOR_NAMES)).astype(np.float32)
    out[5 : 5 + len(COLOR_NAMES)] = hist / hist.sum()
    out[5 + len(COLOR_NAMES)] = edges.ravel()[idx].mean()
    ys = rows.ravel()[idx]
    out[-2:] = (np.percentile(ys, 5), np.percentile(ys, 95))
    return out


def handmade_features(ctx: PersonContext) -> np.ndarray:
    """The ``handmade-1`` vector (length :data:`DIM`) of one person; needs the parsing map."""
    assert ctx.parsing is not None, "handmade features need a parsing map"
    x0, y0, x1, y1 = (int(round(v)) for v in ctx.person.box)
    h, w = ctx.parsing.shape
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    rgb = ctx.image[y0:y1, x0:x1, :3]
    labels = ctx.parsing[y0:y1, x0:x1]
    lab = oklab(rgb)
    names = name_pixels(lab)
    gy, gx = np.gradient(lab[..., 0])
    edges = (np.hypot(gx, gy) > 0.02).astype(np.float32)
    rows = np.broadcast_to(np.linspace(0.0, 1.0, labels.shape[0], dtype=np.float32)[:, None], labels.shape)
    area = int((labels > 0).sum())
    rng = np.random.default_rng(0)
    parts = [
        _region_features(lab, names, edges, np.isin(labels, [ATR[n] for n in names_]), area, rows, rng)
        for _, names_ in REGIONS
    ]
    parts.append(_region_features(lab, names, edges, labels == 0, labels.size, rows, rng))  # background
    shot = np.zeros(len(SHOT_TYPES), np.float32)
    if ctx.shot_type in SHOT_TYPES:
        shot[SHOT_TYPES.index(ctx.shot_type)] = 1.0
    return np.concatenate([*parts, shot]).astype(np.float32)
