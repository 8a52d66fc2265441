"""Perceptual colour: sRGB -> OkLab/OkLCh, named colours per pixel, and region colour distributions.

OkLab (Ottosson 2020) is used rather than CIELAB because its hue angle is closer to uniform: a
NASA "international orange" and a pure red are 8 degrees apart in OkLCh but only 4 in CIELAB.
"""

from __future__ import annotations

import numpy as np

COLOR_NAMES: tuple[str, ...] = (
    "black",
    "white",
    "gray",
    "beige",
    "brown",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "navy",
    "purple",
    "pink",
)
MULTICOLOR = "multicolor"
_IDX = {n: i for i, n in enumerate(COLOR_NAMES)}

_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ],
    dtype=np.float32,
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ],
    dtype=np.float32,
)
_LUT = None


def _srgb_lut() -> np.ndarray:
    global _LUT
    if _LUT is None:
        c = np.arange(256, dtype=np.float32) / 255.0
        _LUT = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    return _LUT


def oklab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> OkLab (..., 3) float32 (L in 0..1)."""
    lin = _srgb_lut()[np.asarray(rgb, dtype=np.uint8)]
    return (np.cbrt(lin @ _M1.T) @ _M2.T).astype(np.float32)


def lch(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OkLab -> (lightness, chroma, hue in degrees 0..360)."""
    a, b = lab[..., 1], lab[..., 2]
    return lab[..., 0], np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360.0


def name_pixels(lab: np.ndarray) -> np.ndarray:
    """Index into :data:`COLOR_NAMES` for every OkLab pixel (rules on lightness, chroma and hue)."""
    L, C, h = lch(lab)
    out = np.full(L.shape, _IDX["gray"], dtype=np.int8)

    def put(cond: np.ndarray, name: str) -> None:
        out[cond] = _IDX[name]

    chromatic = (C >= 0.035) & (L >= 0.2)
    red = chromatic & ((h >= 345) | (h < 33))
    orange = chromatic & (h >= 33) & (h < 62)
    amber = chromatic & (h >= 62) & (h < 90)
    yellow = chromatic & (h >= 90) & (h < 125)
    green = chromatic & (h >= 125) & (h < 200)
    blue = chromatic & (h >= 200) & (h < 290)
    purple = chromatic & (h >= 290) & (h < 345)

    put(~chromatic & (L < 0.32), "black")
    put(~chromatic & (L > 0.86), "white")
    put(~chromatic & (L >= 0.32) & (L <= 0.86), "gray")
    put(red, "red")
    put(red & ((L > 0.78) | ((h >= 345) & (L > 0.66))), "pink")
    put(orange, "orange")
    put(orange & (C < 0.09), "beige")
    put(orange & (L < 0.55), "brown")
    put(amber, "orange")
    put(amber & (C < 0.10), "beige")
    put(amber & (L < 0.62), "brown")
    put(yellow, "yellow")
    put(yellow & (C < 0.08), "beige")
    put(yellow & (L < 0.65) & (C >= 0.08), "green")
    put(green, "green")
    put(blue, "blue")
    put(blue & (L < 0.36), "navy")
    put(purple, "purple")
    put(purple & (L > 0.8), "pink")
    return out


def color_distribution(rgb_pixels: np.ndarray) -> dict[str, float]:
    """Share of each named colour among ``rgb_pixels`` (N, 3) plus ``multicolor`` for spread-out regions.

    The dominant share is the region's colour purity. ``multicolor`` gets ``1 - 2 * top share``
    (nothing while one colour covers half the region), so a shaded or patched garment keeps its
    colour and only a region with no dominant colour is called multicolour.
    """
    if len(rgb_pixels) == 0:
        return {}
    if len(rgb_pixels) > 40_000:  # a regular subsample estimates the shares to well under 1%
        rgb_pixels = rgb_pixels[:: len(rgb_pixels) // 40_000]
    counts = np.bincount(name_pixels(oklab(rgb_pixels)).ravel(), minlength=len(COLOR_NAMES)).astype(float)
    shares = counts / counts.sum()
    spread = max(0.0, 1.0 - 2.0 * float(shares.max()))
    dist = {n: float(s) * (1.0 - spread) for n, s in zip(COLOR_NAMES, shares, strict=True)}
    dist[MULTICOLOR] = spread
    return dist


def delta(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Euclidean OkLab distance (a just-noticeable difference is about 0.02)."""
    return np.linalg.norm(np.asarray(lab1, np.float32) - np.asarray(lab2, np.float32), axis=-1)
