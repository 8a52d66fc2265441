"""Perception backends (people, faces, framing). Importing this package loads no model library."""

from __future__ import annotations

from pathlib import Path

from annotate_anyone.errors import ConfigError
from annotate_anyone.perception.types import FaceDetection, PersonBackend, PersonDetection, SceneDetection

__all__ = ["FaceDetection", "PersonBackend", "PersonDetection", "SceneDetection", "person_backend"]


def person_backend(name: str = "mediapipe", cache_dir: Path | None = None) -> PersonBackend:
    """A person backend by name: ``"mediapipe"`` (offline default: MediaPipe Tasks multi-person pose),
    ``"mediapipe-legacy"`` (the single-person legacy pose, for comparison) or ``"detr:<checkpoint dir>"``
    (a local transformers detector, its main person refined by MediaPipe pose when it is installed).
    ``cache_dir`` (``Settings.model_cache_dir``): where the MediaPipe pose bundle is built; needed by the
    backends that use it, when they load."""
    import importlib.util

    if name == "mediapipe":
        from annotate_anyone.perception.pose_tasks import PoseTasksBackend

        return PoseTasksBackend(cache_dir=cache_dir)
    if name == "mediapipe-legacy":
        from annotate_anyone.perception.mediapipe import MediaPipeBackend

        return MediaPipeBackend()
    if name.startswith("detr:"):
        from annotate_anyone.perception.detector import DetectorPersonBackend, DetrPersonDetector

        refine = None
        if importlib.util.find_spec("mediapipe") is not None:
            from annotate_anyone.perception.pose_tasks import PoseTasksBackend

            refine = PoseTasksBackend(second_look=None, cache_dir=cache_dir)  # one person per crop: no strip pass
        return DetectorPersonBackend(DetrPersonDetector(name.removeprefix("detr:")), refine=refine)
    raise ConfigError(
        f"unknown person backend {name!r}; use 'mediapipe', 'mediapipe-legacy' or 'detr:<checkpoint dir>'"
    )
