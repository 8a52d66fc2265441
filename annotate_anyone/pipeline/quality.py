"""Quality filter: resolution, aspect ratio, blur and (optionally) a BRISQUE no-reference quality score."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from annotate_anyone.errors import MissingExtra
from annotate_anyone.pipeline.decode import blur_grey, laplacian_variance
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Filter
from annotate_anyone.settings import QualityConfig, get_settings

BRISQUE_SIDE = 512  # BRISQUE runs on a copy with this long side (about 0.2 s on one core)


class BrisqueScorer:
    """BRISQUE from the ``brisque`` package (its bundled SVR model), with the numpy-2 scalar fix.

    The package's feature extractor yields 1-element arrays where it means scalars, which numpy 2
    refuses to turn into floats; we flatten them before scaling. Lower scores are better (0-100).
    """

    def __init__(self, side: int = BRISQUE_SIDE) -> None:
        try:
            from brisque import BRISQUE
        except ImportError as exc:
            raise MissingExtra("the BRISQUE quality score", "perception", "brisque") from exc

        class _Brisque(BRISQUE):
            def calculate_brisque_features(self, image: Any, kernel_size: int = 7, sigma: float = 7 / 6) -> Any:
                features = super().calculate_brisque_features(image, kernel_size=kernel_size, sigma=sigma)
                return np.array([float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in features])

        self._model = _Brisque(url=False)
        self.side = side

    def score(self, image: Image.Image) -> float:
        """BRISQUE score of an RGB image (downscaled to ``side`` first); NaN for a flat image."""
        rgb = image.convert("RGB")
        scale = self.side / max(rgb.size)
        if scale < 1:
            rgb = rgb.resize((max(8, round(rgb.width * scale)), max(8, round(rgb.height * scale))), reducing_gap=2.0)
        with np.errstate(all="ignore"):
            return float(self._model.score(np.asarray(rgb)))


class QualityFilter(Filter):
    """Drops images below the quality bar: ``quality:too_small``, ``quality:aspect``, ``quality:blur``,
    ``quality:brisque``. Thresholds come from :class:`~annotate_anyone.settings.QualityConfig`."""

    name = "quality"

    def __init__(self, config: QualityConfig | None = None, *, brisque: BrisqueScorer | None = None) -> None:
        super().__init__()
        self.config = config or get_settings().quality
        self._brisque = brisque

    def check_requirements(self) -> None:  # type: ignore[override]  # depends on this instance's config
        """BRISQUE needs the ``brisque`` package only when ``max_brisque`` is set."""
        if self.config.max_brisque is not None:
            import importlib.util

            if importlib.util.find_spec("brisque") is None:
                raise MissingExtra("stage 'quality' with max_brisque set", "perception", "brisque")

    def setup(self) -> None:
        if self.config.max_brisque is not None and self._brisque is None:
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
        if cfg.max_brisque is not None and self._brisque is not None and record.image is not None:
            score = self._brisque.score(record.image)
            if math.isfinite(score):
                record.metrics["brisque"] = round(score, 3)
                if score > cfg.max_brisque:
                    return "quality:brisque", f"BRISQUE {score:.1f} above {cfg.max_brisque}"
        return None
