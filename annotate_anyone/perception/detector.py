"""Multi-person detection with a transformers object detector (DETR family) from a local checkpoint folder.

The folder holds what ``save_pretrained`` writes for an ``AutoModelForObjectDetection`` and its
``AutoImageProcessor`` (PIL processors work without torchvision). Nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from annotate_anyone.errors import ConfigError, MissingExtra
from annotate_anyone.perception.types import Box, PersonBackend, PersonDetection, SceneDetection


class DetrPersonDetector:
    """Person boxes (xyxy pixels) with scores from a local DETR-family checkpoint."""

    def __init__(self, checkpoint: str | Path, *, score_threshold: float = 0.7, device: str = "cpu") -> None:
        self.checkpoint = Path(checkpoint)
        if not (self.checkpoint / "config.json").is_file():
            raise ConfigError(f"no detector checkpoint (config.json) in {self.checkpoint}")
        self.score_threshold = score_threshold
        self.device = device
        self._model: Any = None
        self._processor: Any = None
        self._person_ids: set[int] = set()
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"detr:{self.checkpoint.name}"

    def _load(self) -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoImageProcessor, AutoModelForObjectDetection
        except ImportError as exc:
            raise MissingExtra("the transformers person detector", "ml", "transformers") from exc
        self._processor = AutoImageProcessor.from_pretrained(self.checkpoint, local_files_only=True)
        model = AutoModelForObjectDetection.from_pretrained(self.checkpoint, local_files_only=True)
        self._model = model.to(self.device).eval()
        labels = {int(k): str(v).lower() for k, v in model.config.id2label.items()}
        self._person_ids = {k for k, v in labels.items() if v == "person"}
        if not self._person_ids:
            raise ConfigError(f"detector {self.checkpoint} has no 'person' label in id2label")

    def detect(self, image: Image.Image) -> list[tuple[Box, float]]:
        """Person boxes above the score threshold, highest score first."""
        import torch

        with self._lock:
            if self._model is None:
                self._load()
        rgb = image.convert("RGB")
        inputs = self._processor(images=rgb, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self._model(**inputs)
        result = self._processor.post_process_object_detection(
            outputs, threshold=self.score_threshold, target_sizes=[(rgb.height, rgb.width)]
        )[0]
        found = []
        for score, label, box in zip(result["scores"], result["labels"], result["boxes"], strict=True):
            if int(label) in self._person_ids:
                x0, y0, x1, y1 = (float(v) for v in box.tolist())
                x0, x1 = float(np.clip(x0, 0, rgb.width)), float(np.clip(x1, 0, rgb.width))
                y0, y1 = float(np.clip(y0, 0, rgb.height)), float(np.clip(y1, 0, rgb.height))
                if x1 > x0 and y1 > y0:
                    found.append(((x0, y0, x1, y1), float(score)))
        found.sort(key=lambda item: item[1], reverse=True)
        return found


class DetectorPersonBackend(PersonBackend):
    """Detector boxes count the people; MediaPipe (when installed) adds keypoints, mask and faces
    for the most prominent one by running pose on its crop."""

    def __init__(self, detector: DetrPersonDetector, refine: PersonBackend | None = None) -> None:
        self.detector = detector
        self.refine = refine
        self.name = detector.version

    def detect(self, image: Image.Image) -> SceneDetection:
        scene = SceneDetection(width=image.width, height=image.height)
        boxes = self.detector.detect(image)
        scene.persons = [PersonDetection(box=box, score=score) for box, score in boxes]
        scene.persons.sort(key=lambda p: p.height, reverse=True)
        if scene.persons and self.refine is not None:
            self._refine(image, scene)
        return scene

    def _refine(self, image: Image.Image, scene: SceneDetection) -> None:
        main = scene.persons[0]
        x0, y0, x1, y1 = main.box
        pad_x, pad_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        left, top = int(max(0, x0 - pad_x)), int(max(0, y0 - pad_y))
        right, bottom = int(min(image.width, x1 + pad_x)), int(min(image.height, y1 + pad_y))
        crop_scene = self.refine.detect(image.crop((left, top, right, bottom)))  # type: ignore[union-attr]
        if not crop_scene.persons:
            return
        found = crop_scene.persons[0]
        if found.keypoints is not None:
            main.keypoints = found.keypoints.copy()
            main.keypoints[:, 0] += left
            main.keypoints[:, 1] += top
        if found.mask is not None:
            full = np.zeros((image.height, image.width), dtype=np.uint8)
            full[top:bottom, left:right] = found.mask
            main.mask = full
        main.face_boxes = [(a + left, b + top, c + left, d + top) for a, b, c, d in found.face_boxes]
