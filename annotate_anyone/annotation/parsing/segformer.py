"""Human parsing with a transformers semantic-segmentation checkpoint (e.g. Segformer trained on ATR)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annotate_anyone.annotation.parsing.base import Parser, PersonView
from annotate_anyone.annotation.taxonomy import ATR_LABELS
from annotate_anyone.errors import ConfigError, MissingExtra


class SegformerParser(Parser):
    """Runs the checkpoint on each person's box crop (batched per image) and pastes the labels back.

    The checkpoint must predict the 18 ATR labels in ATR order (checked against ``config.id2label``
    when it names them). Outside the person's box the map is background; inside, the person mask
    (when given) clears pixels the segmenter assigns to the person but the mask does not.
    """

    labels_supported = frozenset(range(len(ATR_LABELS)))

    def __init__(
        self, checkpoint: str | Path, *, device: str = "cpu", margin: float = 0.1, use_mask: bool = True
    ) -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingExtra("the segformer parser", "ml", "transformers") from exc
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise ConfigError(f"no transformers checkpoint in {path}")
        self.processor = AutoImageProcessor.from_pretrained(str(path))
        self.model = AutoModelForSemanticSegmentation.from_pretrained(str(path)).to(device).eval()
        self.device = device
        self.margin = margin
        self.use_mask = use_mask
        if self.model.config.num_labels != len(ATR_LABELS):
            raise ConfigError(f"parser checkpoint predicts {self.model.config.num_labels} labels, ATR has 18")
        self.model_version = f"segformer:{path.name}"

    def parse(self, image: np.ndarray, person: PersonView) -> np.ndarray:
        return self.parse_many(image, [person])[0]

    def parse_many(self, image: np.ndarray, persons: Sequence[PersonView]) -> list[np.ndarray]:
        import torch

        h, w = image.shape[:2]
        boxes, crops = [], []
        for p in persons:
            x0, y0, x1, y1 = p.box
            mx, my = self.margin * (x1 - x0), self.margin * (y1 - y0)
            box = (int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my)))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                box = (0, 0, w, h)
            boxes.append(box)
            crops.append(np.ascontiguousarray(image[box[1] : box[3], box[0] : box[2], :3]))
        if not crops:
            return []
        inputs = self.processor(images=crops, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits  # (N, 18, h', w')
        maps = []
        for p, box, crop, lg in zip(persons, boxes, crops, logits, strict=True):
            up = torch.nn.functional.interpolate(lg[None], size=crop.shape[:2], mode="bilinear", align_corners=False)
            labels = up[0].argmax(0).to(torch.uint8).cpu().numpy()
            full = np.zeros((h, w), np.uint8)
            full[box[1] : box[3], box[0] : box[2]] = labels
            if self.use_mask and p.mask is not None:
                full[np.asarray(p.mask) <= 0.5] = 0
            maps.append(full)
        return maps
