"""The one Settings class. Every environment variable the project reads is a field here (prefix ``AA_``).

Two profiles:

* ``embedded`` (default): SQLite file, local object store and in-process executor, all under ``AA_HOME``.
* ``service``: PostgreSQL (``AA_DATABASE_URL``), Redis broker (``AA_BROKER_URL``), S3 object store
  (``AA_STORAGE_URL=s3://bucket/prefix`` + ``AA_S3_*``), Celery executor, Label Studio.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from annotate_anyone.annotation.settings import AnnotationConfig
from annotate_anyone.errors import ConfigError
from annotate_anyone.review.settings import ReviewConfig

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "password", "admin", "test"}
SECRET_FIELDS = ("secret_key", "webhook_secret")
SECRETS_FILE = "secrets.json"  # in the home: random secrets written by ``init`` (embedded), mode 0600


def reveal(secret: SecretStr | str | None) -> str | None:
    """The plain text of a secret setting (they are :class:`SecretStr`, so reprs and logs show ``**********``)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def is_placeholder(secret: SecretStr | str | None) -> bool:
    """Whether ``secret`` is one of the well-known placeholders (anyone could forge with it)."""
    return (reveal(secret) or "").strip().lower() in PLACEHOLDER_SECRETS


INGEST_STAGES = ("read", "decode", "takedown", "seen", "quality", "humans", "brisque", "safety", "store")


class QualityConfig(BaseModel):
    """Thresholds of the decode and quality checks (CosmicMan-HQ quality bar by default)."""

    min_side: int = 512
    min_area: int = 512 * 512
    max_aspect: float = 2.5
    min_blur: float = 40.0  # Laplacian variance on the 512 px grey image
    max_brisque: float | None = 70.0
    max_pixels: int = 80_000_000  # Pillow decompression-bomb limit


class SafetyConfig(BaseModel):
    """Threshold of the safety stage (Yahoo's open_nsfw score, 0-1: below 0.2 safe, above 0.8 NSFW by its authors)."""

    max_nsfw: float = Field(default=0.8, ge=0.0, le=1.0)  # drop (``safety:nsfw``) above this score


class HumanConfig(BaseModel):
    """The one-clear-human rule of the human filter (``AA_HUMANS__...``; see pipeline/humans.py)."""

    backend: str = "mediapipe"  # "mediapipe" (multi-person, offline), "mediapipe-legacy", "detr:<dir>"
    min_height_share: float = Field(default=0.4, gt=0.0, le=1.0)  # the kept person's box height / image height
    second_person_ratio: float = Field(default=0.5, gt=0.0, le=1.0)  # another this tall (vs the main) = multiple
    min_person_share: float = Field(default=0.1, ge=0.0, le=1.0)  # shorter people are background, never counted
    min_visible_keypoints: int = Field(default=8, ge=0, le=33)  # of 33, for a person to count as clear
    min_face_share: float = Field(default=0.03, ge=0.0, le=1.0)  # smaller faces do not count as people
    store_mask: bool = True


class AuthConfig(BaseModel):
    """Session lifetime and rate limits (``Settings.auth`` where present, else these defaults)."""

    session_hours: float = 12.0
    login_burst: int = 5  # failed-or-not login attempts per (client, username) before waiting
    login_per_second: float = 0.2
    key_burst: int = 600  # requests per API key (or session) before waiting
    key_per_second: float = 200.0
    last_used_every_s: float = 60.0  # write ``last_used_at`` at most this often


class ModelsConfig(BaseModel):
    """Where and how model-backed stages run (``AA_MODELS__*``); see executors/gpu.py."""

    device: str = Field("auto", description="auto (CUDA when torch sees one, else CPU), cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU"
    )
    device_map: str | None = Field(None, description="transformers device_map (auto) for models larger than one GPU")
    gpu_queue: str | None = Field(None, description="Celery queue for model-backed units (e.g. gpu); None: the default")
    batch_size: int = Field(32, ge=1, description="most person crops per model forward (dynamic batching)")
    batch_wait_ms: float = Field(0.0, ge=0, description="how long a batch waits to fill from other units' persons")
    clip_checkpoint: str | None = Field(None, description="local CLIP/SigLIP folder: zero-shot first pass")
    cascade_gate: float = Field(0.9, ge=0, le=1, description="calibrated CLIP confidence below which the VLM answers")


class Settings(BaseSettings):
    """All configuration, read from ``AA_*`` environment variables (nested with ``__``)."""

    model_config = SettingsConfigDict(env_prefix="AA_", env_nested_delimiter="__", extra="ignore")

    profile: Literal["embedded", "service"] = "embedded"
    home: Path = Path(".annotate-anyone")
    model_cache: Path = Field(
        default=Path("~/.cache/annotate-anyone/models"),
        description="Where model files are built or unpacked at first use (never committed, never downloaded).",
    )

    database_url: str | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str | None = None
    executor: Literal["inline", "celery"] | None = None

    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_public_endpoint_url: str | None = None  # endpoint that browsers reach, for presigned URLs

    label_studio_url: str | None = None
    label_studio_token: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"

    # Secrets are SecretStr (read them with ``reveal``). Embedded: placeholders are replaced by the home's
    # generated secrets file when present.
    secret_key: SecretStr = SecretStr("change-me")
    webhook_secret: SecretStr = SecretStr("change-me")
    source_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders under which API callers (admins) may register local sources; a JSON list or "
        "paths separated by ':'. Empty: local sources only from the machine's own CLI.",
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body the API reads (413)")
    max_json_depth: int = Field(default=64, ge=2, description="Deepest JSON nesting a request body may have (422)")
    fetch_timeout_s: float = Field(default=10.0, gt=0, description="Bound on each network wait of a fetch")
    fetch_deadline_s: float = Field(default=60.0, gt=0, description="Wall-clock bound on one whole fetch")
    job_heartbeat_s: float = Field(default=10.0, gt=0, description="How often a working job says it is alive")
    job_stale_s: float = Field(default=120.0, gt=0, description="Silence after which a job is reclaimed")
    log_level: str | None = Field(
        default=None, description="Log level (DEBUG, INFO, ...); default INFO for serve/worker, WARNING for the CLI"
    )
    log_format: Literal["json", "text"] = Field(default="json", description="One JSON object per line, or text")

    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    batch_size: int = 32
    near_dup_threshold: int | None = 6  # max Hamming distance of 64-bit pHashes; None turns it off
    task_max_retries: int = 5
    # Redis redelivers a unit whose worker died after this many seconds. Units are one batch (AA_BATCH_SIZE
    # items) and take seconds to a minute or two; longer than this, a unit still running is delivered again
    # (idempotent, so only wasted work). Shorter: a killed worker's units come back sooner.
    visibility_timeout: int = Field(default=600, ge=1)
    rescan_interval_s: int = 3600
    round_threshold: int = 1000  # new persons that trigger an annotation round automatically (0: never)
    store_unsynced_prefixes: list[str] = Field(
        default_factory=lambda: ["originals/"],
        description="Local-store key prefixes written without fsync (content-addressed, re-fetchable originals).",
    )

    quality: QualityConfig = Field(default_factory=QualityConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    humans: HumanConfig = Field(default_factory=HumanConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    review_sync_interval_s: int = 300  # Celery beat reconciliation with Label Studio (a full one daily)
    ingest_stages: list[str] = Field(
        default_factory=lambda: list(INGEST_STAGES),
        description="Stage names of the ingest pipeline, in order: each check where it drops the most per "
        "millisecond (see annotate_anyone.pipeline.build).",
    )

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_profile(self) -> Settings:
        if self.profile == "service":
            missing = [n for n in ("database_url", "storage_url") if not getattr(self, n)]
            if missing:
                raise ConfigError(f"service profile needs AA_{missing[0].upper()}")
            for name in SECRET_FIELDS:
                if is_placeholder(getattr(self, name)):
                    raise ConfigError(f"AA_{name.upper()} is a placeholder; set a real secret in service mode")
        elif any(is_placeholder(getattr(self, name)) for name in SECRET_FIELDS):
            self._load_home_secrets()
        return self

    def _load_home_secrets(self) -> None:
        """Take the secrets ``init`` generated into the home for every secret left at a placeholder."""
        path = self.resolved_home / SECRETS_FILE
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            raise ConfigError(f"{path} is readable by other users; run `chmod 600 {path}`")
        stored = json.loads(path.read_text())
        for name in SECRET_FIELDS:
            if is_placeholder(getattr(self, name)) and isinstance(stored.get(name), str):
                setattr(self, name, SecretStr(stored[name]))

    @property
    def has_placeholder_secrets(self) -> bool:
        return any(is_placeholder(getattr(self, name)) for name in SECRET_FIELDS)

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def model_cache_dir(self) -> Path:
        """The model cache folder, created on first use."""
        path = self.model_cache.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'annotate-anyone.db'}"

    @property
    def store_url(self) -> str:
        return self.storage_url or str(self.resolved_home / "objects")

    @property
    def executor_name(self) -> str:
        return self.executor or ("celery" if self.profile == "service" else "inline")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()
