"""Quality filter: resolution, aspect ratio, blur, then (optionally) a BRISQUE no-reference quality score.

The checks run cheapest first; BRISQUE reads the record's shared 512 px working copy."""

from __future__ import annotations

import math

import numpy as np

from annotate_anyone.errors import MissingExtra
from annotate_anyone.pipeline.brisque import BrisqueScorer
from annotate_anyone.pipeline.decode import blur_grey, laplacian_variance, work_image
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Filter
from annotate_anyone.settings import QualityConfig


class QualityFilter(Filter):
    """Drops images below the quality bar: ``quality:too_small``, ``quality:aspect``, ``quality:blur``,
    then ``quality:brisque``. Thresholds come from :class:`~annotate_anyone.settings.QualityConfig`.

    With ``with_brisque=False`` only the three cheap checks run here, and a :class:`BrisqueFilter`
    (stage ``brisque``) scores BRISQUE where the chain puts it: the default chain runs it after the
    persons stage, which drops far more images for each millisecond it costs.
    """

    name = "quality"

    def __init__(
        self, config: QualityConfig, *, brisque: BrisqueScorer | None = None, with_brisque: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        self._brisque = brisque
        self.with_brisque = with_brisque

    @property
    def scores_brisque(self) -> bool:
        return self.with_brisque and self.config.max_brisque is not None

    def check_requirements(self) -> None:  # type: ignore[override]  # depends on this instance's config
        """BRISQUE needs OpenCV and the ``brisque`` package's model files only when it is scored here."""
        if self.scores_brisque:
            import importlib.util

            for module in ("brisque", "cv2"):
                if importlib.util.find_spec(module) is None:
                    raise MissingExtra(f"stage '{self.name}' with max_brisque set", "perception", module)

    def setup(self) -> None:
        if self.scores_brisque and self._brisque is None:
            self._brisque = BrisqueScorer()

    def check(self, record: Record) -> tuple[str, str] | None:
        cfg = self.config
        width, height = record.width or 0, record.height or 0
        short, long = min(width, height), max(width, height)
        if short < cfg.min_side or width * height < cfg.min_area:
            return "quality:too_small", f"{width}x{height} is below {cfg.min_side} px / {cfg.min_area} px area"
        if long / short > cfg.max_aspect:
            return "quality:aspect", f"aspect {long / short:.2f} exceeds {cfg.max_aspect}"
        blur = record.metrics.get("blur")
        if blur is None and record.image is not None:
            blur = record.metrics["blur"] = round(laplacian_variance(np.asarray(blur_grey(record.image))), 3)
        if blur is not None and blur < cfg.min_blur:
            return "quality:blur", f"Laplacian variance {blur:.1f} below {cfg.min_blur}"
        return self.check_brisque(record) if self.with_brisque else None

    def check_brisque(self, record: Record) -> tuple[str, str] | None:
        """``quality:brisque`` above ``max_brisque``; the score goes to ``metrics["brisque"]``."""
        cfg = self.config
        if cfg.max_brisque is not None and self._brisque is not None and record.image is not None:
            score = self._brisque.score(work_image(record, self._brisque.side))
            if math.isfinite(score):
                record.metrics["brisque"] = round(score, 3)
                if score > cfg.max_brisque:
                    return "quality:brisque", f"BRISQUE {score:.1f} above {cfg.max_brisque}"
        return None


class BrisqueFilter(QualityFilter):
    """Stage ``brisque``: only the BRISQUE check of :class:`QualityFilter` (same config, same reason)."""

    name = "brisque"

    def __init__(self, config: QualityConfig, *, brisque: BrisqueScorer | None = None) -> None:
        super().__init__(config, brisque=brisque, with_brisque=True)

    def check(self, record: Record) -> tuple[str, str] | None:
        return self.check_brisque(record)
