"""Aspect-ratio buckets: every (height, width) within side, area and ratio bounds (recipe defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from annotate_anyone.errors import ConfigError


@dataclass(frozen=True)
class AspectBuckets:
    """Bucket sizes with sides ``min_side..max_side`` in ``step``, ``h*w <= max_area``, ratio ``<= max_ratio``."""

    min_side: int = 768
    max_side: int = 1536
    step: int = 64
    max_area: int = 1024 * 1280
    max_ratio: float = 2.0

    @cached_property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """All ``(height, width)`` buckets, sorted."""
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
    def _best_by_ratio(self) -> dict[float, tuple[int, int]]:
        best: dict[float, tuple[int, int]] = {}
        for h, w in self.sizes:
            r = round(math.log(h / w), 9)
            if r not in best or h * w > best[r][0] * best[r][1]:
                best[r] = (h, w)
        return best

    def nearest(self, height: int, width: int) -> tuple[int, int]:
        """The largest bucket whose aspect ratio is closest (in log ratio) to ``height/width``."""
        target = math.log(height / width)
        ratio = min(self._best_by_ratio, key=lambda r: (abs(r - target), -r))
        return self._best_by_ratio[ratio]

    def index(self, height: int, width: int) -> int:
        """Position of :meth:`nearest` in :attr:`sizes`."""
        return self.sizes.index(self.nearest(height, width))
