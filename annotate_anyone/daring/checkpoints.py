"""Checkpoint folders ``<output>/checkpoints/step-NNNNNNN/``: accelerate state, UNet weights, ``daring.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate_anyone.daring.config import TrainConfig
from annotate_anyone.errors import NotFound

META_FILE = "daring.json"


@dataclass
class CheckpointMeta:
    step: int
    has_ema: bool
    config: TrainConfig


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step:07d}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (those with ``daring.json``, written last), oldest first."""
    root = Path(output_dir) / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / META_FILE).exists()) if root.is_dir() else []


def write_meta(path: Path, *, step: int, has_ema: bool, config: TrainConfig) -> None:
    meta = {"step": step, "has_ema": has_ema, "config": config.model_dump(mode="json")}
    (path / META_FILE).write_text(json.dumps(meta, indent=2))


def read_meta(checkpoint: Path) -> CheckpointMeta:
    file = Path(checkpoint) / META_FILE
    if not file.exists():
        raise NotFound(f"{checkpoint} is not a Daring checkpoint (no {META_FILE})")
    raw = json.loads(file.read_text())
    return CheckpointMeta(step=raw["step"], has_ema=raw["has_ema"], config=TrainConfig.model_validate(raw["config"]))


def load_checkpoint_unet(checkpoint: Path, *, use_ema: bool = True) -> Any:
    """The trained UNet of a checkpoint (EMA weights when present and asked for)."""
    from diffusers import UNet2DConditionModel

    meta = read_meta(checkpoint)
    sub = "unet_ema" if use_ema and meta.has_ema else "unet"
    return UNet2DConditionModel.from_pretrained(Path(checkpoint) / sub)
