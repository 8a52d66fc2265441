"""Perception backends (people, faces, framing). Importing this package loads no model library."""

from __future__ import annotations

from annotate_anyone.errors import ConfigError
from annotate_anyone.perception.types import FaceDetection, PersonBackend, PersonDetection, SceneDetection

__all__ = ["FaceDetection", "PersonBackend", "PersonDetection", "SceneDetection", "person_backend"]


def person_backend(name: str = "mediapipe") -> PersonBackend:
    """A person backend by name: ``"mediapipe"`` (offline default) or ``"detr:<checkpoint dir>"``
    (a local transformers detector, refined by MediaPipe when it is installed)."""
    import importlib.util

    if name == "mediapipe":
        from annotate_anyone.perception.mediapipe import MediaPipeBackend

        return MediaPipeBackend()
    if name.startswith("detr:"):
        from annotate_anyone.perception.detector import DetectorPersonBackend, DetrPersonDetector

        refine = None
        if importlib.util.find_spec("mediapipe") is not None:
            from annotate_anyone.perception.mediapipe import MediaPipeBackend

            refine = MediaPipeBackend(peel=False)
        return DetectorPersonBackend(DetrPersonDetector(name.removeprefix("detr:")), refine=refine)
    raise ConfigError(f"unknown person backend {name!r}; use 'mediapipe' or 'detr:<checkpoint dir>'")
