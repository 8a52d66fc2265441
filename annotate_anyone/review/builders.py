"""Backend tasks from review tasks: the data a task shows and the predictions that pre-fill it.

An attribute task carries only the attributes routed for its person (every other attribute's option list
is empty), each pre-filled with the model's value, its ``score`` and the ``model_version``.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

import numpy as np

from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.db.models import Image, Person, ReviewTask
from annotate_anyone.errors import InvalidInput
from annotate_anyone.review import configs
from annotate_anyone.review.client import OutTask
from annotate_anyone.review.engine import Routed
from annotate_anyone.storage import ObjectStore


def box_region(person: Person, image: Image, *, score: float | None = None) -> dict[str, Any]:
    """The person box as a Label Studio rectangle (percent of the image)."""
    x0, y0, x1, y1 = (float(v) for v in (person.box or [0, 0, image.width, image.height])[:4])
    region: dict[str, Any] = {
        "id": f"person-{person.id}",
        "from_name": configs.PERSON,
        "to_name": configs.IMAGE,
        "type": "rectanglelabels",
        "original_width": image.width,
        "original_height": image.height,
        "image_rotation": 0,
        "value": {
            "x": 100.0 * x0 / image.width,
            "y": 100.0 * y0 / image.height,
            "width": 100.0 * (x1 - x0) / image.width,
            "height": 100.0 * (y1 - y0) / image.height,
            "rotation": 0,
            "rectanglelabels": ["person"],
        },
    }
    if score is not None:
        region["score"] = float(score)
    return region


def box_from_region(value: dict[str, Any], width: int, height: int) -> list[float]:
    """A Label Studio rectangle back to ``[x0, y0, x1, y1]`` pixels."""
    x0, y0 = value["x"] * width / 100.0, value["y"] * height / 100.0
    return [round(x0, 2), round(y0, 2), round(x0 + value["width"] * width / 100.0, 2),
            round(y0 + value["height"] * height / 100.0, 2)]  # fmt: skip


def _version(versions: list[str]) -> str:
    distinct = sorted({v for v in versions if v})
    return "+".join(distinct) if distinct else "unknown"


class TaskBuilder:
    """Builds :class:`OutTask` objects for one taxonomy; ``image_url`` decides how images are reached."""

    def __init__(self, taxonomy: Taxonomy, store: ObjectStore, image_url: Any) -> None:
        self.taxonomy = taxonomy
        self.store = store
        self.image_url = image_url  # (person, image) -> URL
        self._empty = {
            configs.options_field(c.group, c.key): [] for c in taxonomy.categories()
        }  # every dynamic Choices needs its field

    def attributes(self, task: ReviewTask, person: Person, image: Image, routed: list[Routed], overlap: int) -> OutTask:
        """Partial attribute task: only ``routed`` questions, pre-filled with the model's answers."""
        data: dict[str, Any] = {"image": self.image_url(person, image), "aa_person_id": person.id, **self._empty}
        options = [
            [configs.display_value(v, self.taxonomy) for v in self.taxonomy.options(r.group, r.key)] for r in routed
        ]
        result: list[dict[str, Any]] = [box_region(person, image)]
        for r, shown, keys in zip(routed, options, configs.assign_hotkeys(options), strict=True):
            data[configs.question_field(r.group, r.key)] = self.taxonomy.attribute(r.group, r.key).question
            data[configs.options_field(r.group, r.key)] = [
                {"value": v, **({"hotkey": k} if k else {})} for v, k in zip(shown, keys, strict=True)
            ]
            if r.value is None or r.value not in self.taxonomy.options(r.group, r.key):
                continue
            score = r.distribution.get(r.value, r.confidence if r.confidence is not None else 0.0)
            result.append(
                {
                    "id": configs.control_name(r.group, r.key),
                    "from_name": configs.control_name(r.group, r.key),
                    "to_name": configs.IMAGE,
                    "type": "choices",
                    "value": {"choices": [configs.display_value(r.value, self.taxonomy)]},
                    "score": float(score),
                }
            )
        confidences = [r.confidence for r in routed if r.confidence is not None]
        prediction = {
            "model_version": _version([r.model_version for r in routed]),
            "score": float(fmean(confidences)) if confidences else 0.0,
            "result": result,
        }
        return OutTask(ref=task.id, data=data, predictions=[prediction], overlap=overlap)

    def box(self, task: ReviewTask, person: Person, image: Image, overlap: int) -> OutTask:
        """Person-box check, pre-filled with the detected box."""
        data = {"image": self.image_url(person, image), "aa_person_id": person.id}
        prediction = {
            "model_version": str((task.payload or {}).get("model_version") or "detector"),
            "score": float(person.score or 0.0),
            "result": [box_region(person, image, score=person.score)],
        }
        return OutTask(ref=task.id, data=data, predictions=[prediction], overlap=overlap)

    def parsing(self, task: ReviewTask, person: Person, image: Image, overlap: int) -> OutTask:
        """Parsing correction, pre-filled with one brush layer per ATR label present in our map."""
        from label_studio_sdk.converter.brush import mask2rle

        from annotate_anyone.annotation.parsing import decode_map

        if not person.parsing_key:
            raise InvalidInput(f"person {person.id} has no parsing map")
        label_map = _fit(decode_map(self.store.get_bytes(person.parsing_key)), image)
        result = []
        for label_id in np.unique(label_map):
            if label_id == 0 or label_id >= len(self.taxonomy.atr_labels):
                continue
            mask = np.where(label_map == label_id, 255, 0).astype(np.uint8)
            result.append(
                {
                    "id": f"atr-{int(label_id)}",
                    "from_name": configs.PARSING,
                    "to_name": configs.IMAGE,
                    "type": "brushlabels",
                    "original_width": image.width,
                    "original_height": image.height,
                    "image_rotation": 0,
                    "value": {
                        "format": "rle",
                        "rle": mask2rle(mask),
                        "brushlabels": [self.taxonomy.atr_labels[int(label_id)]],
                    },
                }
            )
        data = {"image": self.image_url(person, image), "aa_person_id": person.id}
        prediction = {"model_version": person.parsing_model or "parser", "score": 0.0, "result": result}
        return OutTask(ref=task.id, data=data, predictions=[prediction], overlap=overlap)


def _fit(label_map: np.ndarray, image: Image) -> np.ndarray:
    """The parsing map at the image's size (nearest neighbour; maps are stored full-frame)."""
    if label_map.shape == (image.height, image.width):
        return label_map
    from PIL import Image as PILImage

    resized = PILImage.fromarray(label_map).resize((image.width, image.height), PILImage.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8)


def parsing_from_result(result: list[dict[str, Any]], taxonomy: Taxonomy, width: int, height: int) -> np.ndarray:
    """An annotator's brush layers back to a label map (later layers paint over earlier ones)."""
    from label_studio_sdk.converter.brush import decode_rle

    out = np.zeros((height, width), dtype=np.uint8)
    ids = {name: i for i, name in enumerate(taxonomy.atr_labels)}
    for region in result:
        value = region.get("value") or {}
        if region.get("type") != "brushlabels" or "rle" not in value:
            continue
        label = (value.get("brushlabels") or [""])[0]
        if label not in ids:
            continue
        layer = np.reshape(decode_rle(value["rle"]), (height, width, 4))[:, :, 3]
        out[layer > 127] = ids[label]
    return out
