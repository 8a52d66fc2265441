"""Aspect-ratio buckets within side, area and ratio bounds (recipe defaults), in two schemes.

* ``cosmicman`` (default), as CosmicMan's trainer builds them: among sides ``min_side..max_side``
  (step ``step``, area and ratio bounds), the largest size of each landscape aspect ratio, sorted by
  ratio; about ``num_buckets / 2`` of those, evenly spaced in that list (square included), and their
  portrait transposes. An image goes to the bucket whose index its aspect ratio (w/h) interpolates
  to linearly between the buckets' ratios, rounded (a 1488x1255 photo trains at 896x768).
* ``annotate-anyone``: every size within the bounds; an image goes to the largest one whose aspect
  ratio is closest in log ratio (the same photo trains at 1216x1024).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from annotate_anyone.errors import ConfigError

BucketScheme = Literal["cosmicman", "annotate-anyone"]


@dataclass(frozen=True)
class AspectBuckets:
    """Bucket sizes ``(height, width)`` with sides ``min_side..max_side`` in ``step``, ``h*w <= max_area``,
    ratio ``<= max_ratio``, chosen by ``scheme`` (``num_buckets`` applies to ``cosmicman``)."""

    min_side: int = 768
    max_side: int = 1536
    step: int = 64
    max_area: int = 1024 * 1280
    max_ratio: float = 2.0
    scheme: BucketScheme = "cosmicman"
    num_buckets: int = 16

    @cached_property
    def _all(self) -> tuple[tuple[int, int], ...]:
        sides = range(self.min_side, self.max_side + 1, self.step)
        found = tuple(
            (h, w)
            for h in sides
            for w in sides
            if h * w <= self.max_area and max(h, w) / min(h, w) <= self.max_ratio + 1e-9
        )
        if not found:
            raise ConfigError(f"no aspect bucket satisfies {self}")
        return found

    @cached_property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """All ``(height, width)`` buckets, sorted (``cosmicman``: by aspect ratio w/h)."""
        if self.scheme == "annotate-anyone":
            return self._all
        if self.scheme != "cosmicman":
            raise ConfigError(f"unknown bucket scheme {self.scheme!r}; expected 'cosmicman' or 'annotate-anyone'")
        largest: dict[str, tuple[int, int]] = {}  # landscape ratio (4 significant digits) -> largest (h, w)
        for h, w in self._all:
            if w >= h:
                ratio = f"{w / h:.4e}"
                if ratio not in largest or h * w > largest[ratio][0] * largest[ratio][1]:
                    largest[ratio] = (h, w)
        landscape = sorted(largest.values(), key=lambda s: s[1] / s[0])
        count = min(max(int((self.num_buckets + 1) / 2), 1), len(landscape))
        picked = {int(i) for i in np.linspace(0, len(landscape) - 1, count, dtype=int)}
        chosen = {landscape[i] for i in picked} | {landscape[i][::-1] for i in picked}
        return tuple(sorted(chosen, key=lambda s: s[1] / s[0]))

    @cached_property
    def _best_by_ratio(self) -> dict[float, tuple[int, int]]:
        best: dict[float, tuple[int, int]] = {}
        for h, w in self.sizes:
            r = round(math.log(h / w), 9)
            if r not in best or h * w > best[r][0] * best[r][1]:
                best[r] = (h, w)
        return best

    def nearest(self, height: int, width: int) -> tuple[int, int]:
        """The bucket of an image of ``height`` x ``width`` under the scheme."""
        return self.sizes[self.index(height, width)]

    def index(self, height: int, width: int) -> int:
        """Position of the image's bucket in :attr:`sizes`."""
        if self.scheme == "cosmicman":
            ratios = [w / h for h, w in self.sizes]
            if len(ratios) == 1:
                return 0
            aspect = min(max(width / height, ratios[0]), ratios[-1])  # beyond the ends: the end buckets
            k = min(max(bisect.bisect_left(ratios, aspect), 1), len(ratios) - 1)
            position = k - 1 + (aspect - ratios[k - 1]) / (ratios[k] - ratios[k - 1])
            return round(position)  # Python's round (half to even), as theirs
        target = math.log(height / width)
        ratio = min(self._best_by_ratio, key=lambda r: (abs(r - target), -r))
        return self.sizes.index(self._best_by_ratio[ratio])
