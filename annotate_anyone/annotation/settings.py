"""Settings of the annotation engine: the ``Settings.annotation`` section (``AA_ANNOTATION__GATE=0.9`` ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AnnotationConfig(BaseModel):
    """Parser and labelers to use, and the routing targets."""

    parser: Literal["geometric", "segformer"] = "geometric"
    parser_checkpoint: str | None = None
    vlm_checkpoint: str | None = None
    vlm_version: str | None = Field(
        None, description="VLM labeler version: None/latest = newest fine-tune of vlm_checkpoint, base = none, or an id"
    )
    vlm_finetune: bool = Field(True, description="each flywheel round fine-tunes the VLM (LoRA) on human answers")
    device: str = "cpu"
    taxonomy_path: str | None = None
    gate: float = Field(0.85, description="category accuracy on the gold set below which humans label it all")
    target_accuracy: float = Field(0.95, description="accuracy the auto-accepted labels of a category must reach")
    budget: int | None = Field(2000, description="most labels sent to humans per annotate call")
    calibration: Literal["temperature", "isotonic"] = "temperature"
    min_gold: int = Field(10, description="gold labels a category needs before its accuracy is trusted")
    min_head_labels: int = Field(8, description="human labels a category needs before a head is trained")
    seconds_per_label: float = Field(4.0, description="human time to label one attribute by hand")
