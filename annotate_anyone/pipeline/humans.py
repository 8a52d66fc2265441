"""Human filter: keep images with exactly one clear, well-framed person (CosmicMan's rule); fill ``record.persons``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from annotate_anyone.errors import MissingExtra
from annotate_anyone.perception.types import PersonBackend, PersonDetection, SceneDetection, visible_in_frame
from annotate_anyone.pipeline.decode import work_image
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage

BACKEND_MODULES = {
    "mediapipe": {"mediapipe": "perception"},
    "mediapipe-legacy": {"mediapipe": "perception"},
    "detr": {"transformers": "ml", "torch": "ml"},
}


class HumanFilter(Stage):
    """Drops ``humans:none``, ``humans:multiple``, ``humans:unclear``, ``humans:too_small``,
    ``humans:truncated``, ``humans:no_face``; stores ``persons_detected`` in ``record.metrics``.

    A person is *clear* when at least ``min_visible_keypoints`` keypoints are seen and its box is at
    least ``min_person_share`` of the image height (smaller people are background). The main person
    is the most prominent clear one.

    * none: the backend found nobody;
    * multiple: another clear person at least ``second_person_ratio`` as tall as the main one (or
      itself ``min_height_share`` tall), or two faces of comparable size (at least
      ``second_person_ratio`` of the largest);
    * unclear: the main person shows fewer than ``min_visible_keypoints`` keypoints;
    * too_small: the main person's box is shorter than ``min_height_share`` of the image;
    * truncated: head out of frame or the body cut at a side (from keypoint visibility);
    * no_face: the framing needs a face (upper body, portrait, headshot) and none was detected.
    """

    name = "humans"

    def __init__(
        self,
        backend: str | PersonBackend = "mediapipe",
        *,
        min_height_share: float = 0.4,
        second_person_ratio: float = 0.5,
        min_face_share: float = 0.03,
        min_person_share: float = 0.1,
        min_visible_keypoints: int = 8,
        store_mask: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir`` (``Settings.model_cache_dir``): where a named MediaPipe backend builds its model bundle."""
        super().__init__()
        self.cache_dir = cache_dir
        self.backend_name = backend if isinstance(backend, str) else backend.name
        self._backend = backend if isinstance(backend, PersonBackend) else None
        self.min_height_share = min_height_share
        self.second_person_ratio = second_person_ratio
        self.min_face_share = min_face_share
        self.min_person_share = min_person_share
        self.min_visible_keypoints = min_visible_keypoints
        self.store_mask = store_mask

    def check_requirements(self) -> None:  # type: ignore[override]  # depends on the chosen backend
        import importlib.util

        kind = self.backend_name.split(":", 1)[0]
        for module, extra in BACKEND_MODULES.get(kind, {}).items():
            if importlib.util.find_spec(module) is None:
                raise MissingExtra(f"person backend '{kind}'", extra, module)

    def setup(self) -> None:
        if self._backend is None:
            from annotate_anyone.perception import person_backend

            self._backend = person_backend(self.backend_name, self.cache_dir)

    def process(self, record: Record) -> Record:
        if record.image is None:
            return record.drop("humans:no_image", "the image was not decoded")
        assert self._backend is not None
        scene = self._backend.detect(work_image(record))  # the shared 512 px copy (BRISQUE and NSFW read it too)
        record.metrics["persons_detected"] = len(scene.persons)
        verdict = self.judge(scene)
        if verdict is not None:
            return record.drop(*verdict)
        main = self._main(scene)
        record.metrics["person_height_share"] = round(main.height / scene.height, 4)
        record.persons = [self._person_row(main, scene, record)]
        return record

    def judge(self, scene: SceneDetection) -> tuple[str, str] | None:
        """The drop reason and detail for a scene, or ``None`` to keep it."""
        from annotate_anyone.perception.shot_type import FACE_NEEDED, shot_type, truncation

        if not scene.persons:
            return "humans:none", f"no person found ({len(scene.faces)} faces)"
        main = self._main(scene)
        others = [p for p in scene.persons if p is not main and self._counts_beside(p, main, scene)]
        faces = [f for f in scene.faces if f.box[3] - f.box[1] >= self.min_face_share * scene.height]
        largest = max((f.box[3] - f.box[1] for f in faces), default=0.0)
        big_faces = [f for f in faces if f.box[3] - f.box[1] >= self.second_person_ratio * largest]
        if others or len(big_faces) >= 2:
            return "humans:multiple", (
                f"{1 + len(others)} prominent people of {len(scene.persons)} found, {len(big_faces)} comparable faces"
            )
        seen = self._seen(main, scene)
        if seen < self.min_visible_keypoints:
            return "humans:unclear", f"{seen} keypoints of the main person seen (< {self.min_visible_keypoints})"
        share = main.height / scene.height
        if share < self.min_height_share:
            return "humans:too_small", f"person is {share:.0%} of the image height (< {self.min_height_share:.0%})"
        if main.keypoints is not None:
            cut = truncation(main.keypoints, scene.width, scene.height)
            if cut:
                return "humans:truncated", cut
            shot = shot_type(main.keypoints, scene.width, scene.height, main.face_boxes)
            if shot in FACE_NEEDED and not main.face_boxes:
                return "humans:no_face", f"{shot} framing without a detected face"
        return None

    def _main(self, scene: SceneDetection) -> PersonDetection:
        """The most prominent clear person (backends list people most prominent first)."""
        return next((p for p in scene.persons if self._clear(p, scene)), scene.persons[0])

    def _clear(self, person: PersonDetection, scene: SceneDetection) -> bool:
        big_enough = person.height >= self.min_person_share * scene.height
        return big_enough and self._seen(person, scene) >= self.min_visible_keypoints

    @staticmethod
    def _seen(person: PersonDetection, scene: SceneDetection) -> int:
        """Visible in-frame keypoints (all 33 when the backend gives none, like a box detector)."""
        if person.keypoints is None:
            return 33
        return int(visible_in_frame(person.keypoints, scene.width, scene.height).sum())

    def _counts_beside(self, person: PersonDetection, main: PersonDetection, scene: SceneDetection) -> bool:
        """Another clear person, tall beside the main one or tall in the image."""
        beside = person.height >= self.second_person_ratio * main.height
        return (beside or person.height >= self.min_height_share * scene.height) and self._clear(person, scene)

    def _person_row(self, person: PersonDetection, scene: SceneDetection, record: Record) -> dict[str, Any]:
        """The person as stored: coordinates in original pixels, mask as PNG at the original size."""
        from annotate_anyone.perception.shot_type import shot_type

        sx = (record.width or scene.width) / scene.width
        sy = (record.height or scene.height) / scene.height

        def scale(box: tuple[float, ...]) -> list[float]:
            return [round(box[0] * sx, 1), round(box[1] * sy, 1), round(box[2] * sx, 1), round(box[3] * sy, 1)]

        row: dict[str, Any] = {
            "box": scale(person.box),
            "score": round(float(person.score), 4),
            "keypoints": None,
            "shot_type": None,
            "face_boxes": [scale(b) for b in person.face_boxes],
            "backend": self.backend_name,
        }
        if person.keypoints is not None:
            kp = person.keypoints
            row["keypoints"] = [
                [round(float(x) * sx, 1), round(float(y) * sy, 1), round(float(v), 3)] for x, y, v in kp
            ]
            row["shot_type"] = shot_type(kp, scene.width, scene.height, person.face_boxes)
        if self.store_mask and person.mask is not None:
            row["mask_png"] = encode_mask(person.mask, (record.width or scene.width, record.height or scene.height))
        return row


def encode_mask(mask: np.ndarray, size: tuple[int, int]) -> bytes:
    """A 0/255 mask as a 1-bit PNG at ``size`` (width, height)."""
    image = Image.fromarray(np.where(mask > 127, 255, 0).astype(np.uint8), "L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.convert("1").save(buf, "PNG", optimize=False)
    return buf.getvalue()
