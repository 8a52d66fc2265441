"""The one composition root: a pipeline is a list of stage names from config, assembled here.

The stages that ask what the pool already holds (``seen``, ``takedown``) run checks the caller passes
(:class:`PoolChecks`): the pipeline names no table, the catalog implements them and ``catalog.ingest`` passes
them when it builds the ingest pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annotate_anyone.errors import ConfigError
from annotate_anyone.pipeline.stage import Stage
from annotate_anyone.settings import Settings

if TYPE_CHECKING:
    from annotate_anyone.pipeline.pool import PoolCheck


@dataclass(frozen=True, slots=True)
class PoolChecks:
    """What the ``seen`` and ``takedown`` stages ask of the pool (``catalog.ingest.POOL_CHECKS``)."""

    seen: PoolCheck  # drops records whose bytes are already an image, or repeat an earlier record of the batch
    taken_down: PoolCheck  # drops records whose hash, URL or source has a takedown


StageFactory = Callable[[Settings, dict[str, Any], "PoolChecks | None"], Stage]


def _pool(pool: PoolChecks | None, stage: str) -> PoolChecks:
    if pool is None:
        raise ConfigError(f"the {stage!r} stage asks what the pool holds: build it with the pool's checks")
    return pool


def _read(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.fetch import ReadStage

    # confined: a record reads local files only within its source's root (set by the ingest job); a proxy only
    # when the source names one (the environment's proxy variables are ignored)
    allow_private = bool(options.get("allow_private", False))
    return ReadStage(allow_private=allow_private, settings=settings, confine=True, proxy=options.get("proxy") or None)


def _decode(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.decode import DecodeStage

    return DecodeStage(max_pixels=settings.quality.max_pixels)


def _seen(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.pool import SeenFilter

    return SeenFilter(_pool(pool, "seen").seen, settings.db_url)


def _takedown(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.pool import TakedownFilter

    return TakedownFilter(_pool(pool, "takedown").taken_down, settings.db_url)


def _quality(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.quality import QualityFilter

    config = settings.quality.model_copy(update=options.get("quality", {}))
    return QualityFilter(config, with_brisque=not options.get("brisque_stage", False))


def _brisque(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.quality import BrisqueFilter

    return BrisqueFilter(settings.quality.model_copy(update=options.get("quality", {})))


def _humans(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.humans import HumanFilter

    config = settings.humans.model_copy(update=options.get("humans", {}))
    backend = options.get("human_backend", config.backend)
    # the folder itself is made when the pose bundle is first built (a clear ConfigError if it cannot be)
    cache = settings.model_cache.expanduser().resolve()
    return HumanFilter(backend, cache_dir=cache, **config.model_dump(exclude={"backend"}))


def _safety(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.safety import SafetyFilter

    return SafetyFilter(settings.safety.model_copy(update=options.get("safety", {})))


def _store(settings: Settings, options: dict[str, Any], pool: PoolChecks | None) -> Stage:
    from annotate_anyone.pipeline.store import StoreStage

    return StoreStage(settings.store_url, settings)


STAGES: dict[str, StageFactory] = {
    "read": _read,
    "decode": _decode,
    "seen": _seen,
    "takedown": _takedown,
    "quality": _quality,
    "brisque": _brisque,
    "humans": _humans,
    "safety": _safety,
    "store": _store,
}


def build_stages(
    names: list[str], settings: Settings, options: dict[str, Any] | None = None, pool: PoolChecks | None = None
) -> list[Stage]:
    """Build the named stages in order; unknown names, missing extras and a ``seen`` or ``takedown`` stage
    without ``pool`` fail here, not mid-run."""
    # a chain with its own "brisque" stage scores BRISQUE there, not in "quality"
    options = {**(options or {}), "brisque_stage": "brisque" in names}
    stages = []
    for name in names:
        factory = STAGES.get(name)
        if factory is None:
            raise ConfigError(f"unknown pipeline stage {name!r}; known: {', '.join(STAGES)}")
        stage = factory(settings, options, pool)
        stage.check_requirements()
        stages.append(stage)
    return stages
