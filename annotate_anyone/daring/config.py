"""Trainer configuration: one YAML or TOML file parsed into :class:`TrainConfig`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotate_anyone.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Base model: a local diffusers-format folder (``unet/``, ``vae/``, ``text_encoder/``, ...)."""

    kind: Literal["sd15", "sdxl"] = "sd15"
    path: Path
    vae_factor: int = 8


class BucketConfig(_Strict):
    """Aspect buckets (see :mod:`annotate_anyone.daring.buckets`): CosmicMan's scheme by default."""

    min_side: int = 768
    max_side: int = 1536
    step: int = 64
    max_area: int = 1024 * 1280
    max_ratio: float = 2.0
    scheme: Literal["cosmicman", "annotate-anyone"] = "cosmicman"
    num_buckets: int = Field(16, ge=1)


class DataConfig(_Strict):
    """The release: a parquet file or a folder of parquet files, and the data root their paths resolve under."""

    index: Path
    root: Path | None = None
    buckets: BucketConfig = Field(default_factory=BucketConfig)
    group_dropout: float = 0.1
    optional_keep: float = 0.5
    caption_dropout: float = 0.1
    max_tokens: int = 77
    map_factor: int = 16
    mask_antialias: bool = True
    num_workers: int = 0
    hflip: float = Field(0.5, ge=0.0, le=1.0)  # probability of flipping image and masks horizontally
    shot_phrases: Literal["cosmicman", "annotate-anyone"] = "cosmicman"
    # SDXL time ids: "cosmicman" = original and target size are the bucket size, crop (0, 0) (theirs);
    # "sdxl" = the image's own size and the centre crop's offset (SDXL's paper)
    time_ids: Literal["cosmicman", "sdxl"] = "cosmicman"


class OptimConfig(_Strict):
    lr: float = 1e-5
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0


class TrainConfig(_Strict):
    """Everything a run needs (recipe defaults from the CosmicMan SDXL run)."""

    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    output_dir: Path
    seed: int = 0
    batch_size: int = 4
    grad_accum: int = 4
    max_steps: int = 100_000
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 where CUDA has it, else no
    gradient_checkpointing: bool | Literal["auto"] = "auto"  # auto: on where CUDA is present
    ema_decay: float | None = 0.9999
    noise_offset: float = 0.05
    hola_weight: float = 1.0
    checkpoint_every: int = 1000
    keep_checkpoints: int | None = None
    log_every: int = 1
    validate_every: int | None = 1000
    validation_samples: int = 4
    resume: Literal["latest"] | Path | None = "latest"


def load_config(path: Path) -> TrainConfig:
    """Parse a ``.yaml``/``.yml`` or ``.toml`` file; relative paths resolve against the file's folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    try:
        config = TrainConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.parent.resolve()

    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    config.model.path = rel(config.model.path) or config.model.path
    config.data.index = rel(config.data.index) or config.data.index
    if config.data.root is not None:
        config.data.root = rel(config.data.root) or config.data.root
    config.output_dir = rel(config.output_dir) or config.output_dir
    if isinstance(config.resume, Path):
        config.resume = rel(config.resume) or config.resume
    return config
