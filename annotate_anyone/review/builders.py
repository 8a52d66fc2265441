"""Backend tasks from review tasks: the data a task shows and the predictions that pre-fill it.

An attribute task carries only the questions routed for its person (every other option list is empty),
laid out presence first (question_layout.py). The model's top answers and their calibrated scores are shown next to
the options; its answer is pre-selected only when it is confident enough; the person's box is drawn tight.
"""

from __future__ import annotations

import io
from html import escape
from typing import Any

import numpy as np

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import Taxonomy, category_id
from annotate_anyone.catalog.models import Image, Person
from annotate_anyone.errors import InvalidInput
from annotate_anyone.review import configs, question_layout
from annotate_anyone.review.client import OutTask
from annotate_anyone.review.engine import Routed
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.storage import ObjectStore


def box_region(
    person: Person, image: Image, *, score: float | None = None, box: list[float] | None = None
) -> dict[str, Any]:
    """The person box (or ``box``) as a Label Studio rectangle (percent of the image)."""
    x0, y0, x1, y1 = (float(v) for v in (box or person.box or [0, 0, image.width, image.height])[:4])
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


def _choice(name: str, values: list[str], score: float) -> dict[str, Any]:
    return {
        "id": name,
        "from_name": name,
        "to_name": configs.IMAGE,
        "type": "choices",
        "value": {"choices": values},
        "score": float(score),
    }


def box_from_region(value: dict[str, Any], width: int, height: int) -> list[float]:
    """A Label Studio rectangle back to ``[x0, y0, x1, y1]`` pixels."""
    x0, y0 = value["x"] * width / 100.0, value["y"] * height / 100.0
    return [round(x0, 2), round(y0, 2), round(x0 + value["width"] * width / 100.0, 2),
            round(y0 + value["height"] * height / 100.0, 2)]  # fmt: skip


def _version(versions: list[str]) -> str:
    distinct = sorted({v for v in versions if v})
    return "+".join(distinct) if distinct else "unknown"


def tight_box(person: Person, image: Image, mask: np.ndarray | None, *, pad: float = 0.03) -> list[float]:
    """The person's box from what is really theirs: the mask's extent and the visible keypoints, padded.

    A detector box can span the image or stop at the hips; the mask and the ankles say where the body is.
    Falls back to the stored box (or the whole image) when neither is there.
    """
    xs: list[float] = []
    ys: list[float] = []
    if mask is not None and mask.size:
        rows, cols = np.nonzero(mask >= 0.5)
        if rows.size:
            sx, sy = image.width / mask.shape[1], image.height / mask.shape[0]
            xs += [float(cols.min()) * sx, float(cols.max() + 1) * sx]
            ys += [float(rows.min()) * sy, float(rows.max() + 1) * sy]
    for point in person.keypoints or []:
        x, y, v = (float(c) for c in point[:3])
        if v >= 0.5 and 0 <= x <= image.width and 0 <= y <= image.height:
            xs.append(x)
            ys.append(y)
    if len(xs) < 2:
        return [float(v) for v in (person.box or [0, 0, image.width, image.height])[:4]]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    dx, dy = pad * (x1 - x0), pad * (y1 - y0)
    return [max(0.0, x0 - dx), max(0.0, y0 - dy), min(float(image.width), x1 + dx), min(float(image.height), y1 + dy)]


def _percent(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.01 or p == 0 else "<1%"


class TaskBuilder:
    """Builds :class:`OutTask` objects for one taxonomy; ``image_url`` decides how images are reached.

    ``overlay_url(person, image)`` gives the parsing overlay's URL (``None``: the person has no parsing map).
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        store: ObjectStore,
        image_url: Any,
        *,
        options: ReviewConfig | None = None,
        overlay_url: Any = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.store = store
        self.image_url = image_url  # (person, image) -> URL
        self.overlay_url = overlay_url  # (person, image) -> URL | None
        self.options = options or ReviewConfig()
        self._empty: dict[str, Any] = {
            configs.SUMMARY: "",
            configs.PERSON_HEAD: "",
            configs.PARTS_QUESTION: "",
            configs.PARTS_OPTIONS: [],
            configs.OVERLAY: "",
            configs.OVERLAY_TITLE: "Body-part overlay: none for this person",
            configs.KEY_SINK: [],
        }  # every field the config names needs a value, or Label Studio shows the "$name" itself
        for c in taxonomy.categories():
            self._empty[configs.options_field(c.group, c.key)] = []
            self._empty[configs.question_field(c.group, c.key)] = ""
        for index in question_layout.PART_LABELS:
            self._empty[configs.part_head_field(index)] = ""

    def person_box(self, person: Person, image: Image) -> list[float]:
        """:func:`tight_box` with the person's stored mask."""
        mask = None
        if person.mask_key and self.store.exists(person.mask_key):
            from PIL import Image as PILImage

            with PILImage.open(io.BytesIO(self.store.get_bytes(person.mask_key))) as im:
                mask = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        return tight_box(person, image, mask)

    def _options(self, r: Routed, preselect: bool) -> list[dict[str, Any]]:
        """A question's options; the model's top three carry their calibrated score next to the value."""
        top = sorted(((p, v) for v, p in r.distribution.items() if p > 0), reverse=True)[:3]
        scores = {v: p for p, v in top}
        out = []
        for value in self.taxonomy.options(r.group, r.key):
            shown = configs.display_value(value, self.taxonomy)
            option: dict[str, Any] = {"value": shown}
            if value in scores:
                mark = "model's answer, " if preselect and value == r.value else "model "
                option["html"] = f'{escape(shown)}<span class="aa-model">{mark}{_percent(scores[value])}</span>'
            out.append(option)
        return out

    def _parts(
        self, plan: question_layout.Layout, by_category: dict[str, Routed]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The checklist's options (with the model's presence probability) and the parts to pre-tick."""
        options, ticked = [], []
        for part in plan.parts:
            r = by_category.get(category_id(part.group, part.presence_key))
            p = question_layout.presence_probability(self.taxonomy, part.presence_key, r.distribution) if r else None
            option: dict[str, Any] = {"value": part.label}
            if r is not None:  # its presence was routed: say what the model thinks of it
                note = "no model answer" if p is None else f"model {_percent(p)}"
                option["html"] = f'{escape(part.label)}<span class="aa-model">{note}</span>'
            options.append(option)
            if part.cut_label:  # the same part when the frame cuts it off: its length is not asked
                options.append({"value": part.cut_label})
            if p is not None and p >= self.options.preselect_confidence:
                ticked.append(part.label)
        options.append({"value": question_layout.NONE_OF_THESE})
        return options, ticked

    def attributes(
        self,
        task: ReviewTask,
        person: Person,
        image: Image,
        routed: list[Routed],
        overlap: int,
        plan: question_layout.Layout | None = None,
    ) -> OutTask:
        """Partial attribute task: the routed questions, presence first (see :mod:`question_layout`).

        The model's answer is pre-selected only at ``preselect_confidence`` or above; its top answers and
        their calibrated scores are shown next to the options either way. The prediction's score is the
        lowest confidence among the routed questions, and the task's summary line says so in words.
        """
        plan = plan or question_layout.plan(self.taxonomy, [(r.group, r.key) for r in routed])
        threshold = self.options.preselect_confidence
        by_category = {r.category: r for r in routed}
        data: dict[str, Any] = {**self._empty, "image": self.image_url(person, image), "aa_person_id": person.id}
        overlay = self.overlay_url(person, image) if self.overlay_url else None
        if overlay:
            data[configs.OVERLAY] = overlay
            data[configs.OVERLAY_TITLE] = "Body-part overlay (the model's parsing): open to compare"
        result: list[dict[str, Any]] = [box_region(person, image, box=self.person_box(person, image))]
        controls: list[tuple[str, list[dict[str, Any]]]] = []
        if plan.person:
            data[configs.PERSON_HEAD] = "About the person"
        for group, key in [*plan.person, *((p.group, k) for p in plan.parts for k in p.questions)]:
            r = by_category.get(category_id(group, key)) or Routed(group, key, None, None, {}, "")
            sure = r.value in self.taxonomy.options(group, key) and (r.confidence or 0.0) >= threshold
            if group in question_layout.PART_LABELS and self.taxonomy.is_absent(group, key, r.value):
                sure = False  # a part's absence is the checklist's to say; its questions show once it is ticked
            data[configs.question_field(group, key)] = self.taxonomy.attribute(group, key).question
            options = self._options(r, sure)
            data[configs.options_field(group, key)] = options
            controls.append((configs.options_field(group, key), options))
            if sure:
                result.append(_choice(configs.control_name(group, key), [configs.display_value(r.value, self.taxonomy)],
                                      r.distribution.get(r.value, r.confidence or 0.0)))  # fmt: skip
        if plan.parts:
            data[configs.PARTS_QUESTION] = (
                'Which of these can you see the person wearing or carrying? Tick each one ("partly out of '
                'frame" when the photo cuts it off); leave out what is absent or hidden.'
            )
            options, ticked = self._parts(plan, by_category)
            data[configs.PARTS_OPTIONS] = options
            controls.insert(len(plan.person), (configs.PARTS_OPTIONS, options))
            for part in plan.parts:
                if part.questions:
                    data[configs.part_head_field(part.group)] = part.label.capitalize()
            if ticked:
                result.append(_choice(question_layout.PARTS, ticked, threshold))
        pool = configs.HOTKEY_POOL[: self.options.max_hotkeys]
        keys = configs.assign_hotkeys([o for _, o in controls], pool)
        for (_, options), row in zip(controls, keys, strict=True):
            for option, key in zip(options, row, strict=True):
                if key:
                    option["hotkey"] = key
        data[configs.KEY_SINK] = configs.key_sink(assigned=all(k for row in keys for k in row))
        confidences = [r.confidence or 0.0 for r in routed]
        lowest = min(confidences) if confidences else 0.0
        missing = sum(1 for r in routed if r.value is None)
        data[configs.SUMMARY] = (
            f"Model confidence on these {len(routed)} questions: lowest {_percent(lowest)}"
            + (f"; no model answer for {missing}" if missing else "")
            + f". Answers are pre-selected only at {_percent(threshold)} or more."
        )
        prediction = {
            "model_version": _version([r.model_version for r in routed]),
            "score": float(lowest),
            "result": result,
        }
        return OutTask(ref=task.id, data=data, predictions=[prediction], overlap=overlap)

    def box(self, task: ReviewTask, person: Person, image: Image, overlap: int) -> OutTask:
        """Person-box check, pre-filled with the detected box."""
        data = {"image": self.image_url(person, image), "aa_person_id": person.id}
        prediction = {
            "model_version": str((task.payload or {}).get("model_version") or "detector"),
            "score": float(person.score or 0.0),
            "result": [box_region(person, image, score=person.score, box=self.person_box(person, image))],
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
