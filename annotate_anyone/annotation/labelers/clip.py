"""CLIP-style zero-shot labeler, and the cascade that sends only its unsure categories to a VLM.

:class:`CLIPLabeler` loads a local ``CLIPModel`` or ``SiglipModel`` folder (``AutoModel`` +
``AutoProcessor``). Every option of every category becomes a few prompts built from the taxonomy
(the question and its answer, "a photo of a person whose top color is red", ...); their normalised
text embeddings are averaged (prompt ensembling) and cached per taxonomy version. The person crop
(box plus margin) is embedded once; a category's distribution is the softmax of the model's
scaled cosine similarities over that category's options (divided by ``temperature``; SigLIP's bias
is the same for every option and cancels).

:class:`CascadeLabeler` composes two labelers: the cheap one answers every category, and a category
goes to the expensive one only when the cheap answer's *calibrated* confidence is below ``gate``.
Calibration is per category (reusing :mod:`annotate_anyone.annotation.calibration`), fitted on gold
(:meth:`CascadeLabeler.fit_on_gold`) or taken from the calibration rows the service keeps
(:func:`calibrators_from_session`). A category with no calibration goes to the expensive labeler
unless ``trust_uncalibrated``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annotate_anyone.annotation.calibration import CalibrationResult, Calibrator, Method, fit_calibration
from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.taxonomy import Category, Taxonomy, load_taxonomy
from annotate_anyone.errors import ConfigError, InvalidInput, MissingExtra

if TYPE_CHECKING:
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.settings import ModelsConfig

NA_TEXT = "not visible"
FAMILIES = ("clip", "siglip")


def _part(taxonomy: Taxonomy, cat: Category) -> tuple[str, str]:
    """(thing, attribute words) of a category, e.g. ("top", "color"), ("hair", "hair color"), ("person", "age")."""
    group = taxonomy.group(cat.group)
    words = taxonomy.release_key(cat.key).replace("_", " ")
    thing = "person" if cat.group == 0 else group.name
    return thing, words


def prompt_texts(taxonomy: Taxonomy, cat: Category) -> dict[str, list[str]]:
    """The prompts of each option of ``cat`` (several per option: they are ensembled)."""
    thing, words = _part(taxonomy, cat)
    noun = taxonomy.group(cat.group).fixed_noun or thing
    out: dict[str, list[str]] = {}
    for option in cat.options:
        if option == taxonomy.na_value:
            out[option] = [
                f"{cat.question} {NA_TEXT}.",
                f"a photo of a person whose {thing} is {NA_TEXT}." if thing != "person" else
                f"a photo of a person whose {words} is {NA_TEXT}.",
                f"a photo of a person with no visible {noun}.",
            ]  # fmt: skip
            continue
        texts = [f"{cat.question} {option}."]
        if cat.key == "present":
            texts.append(f"a photo of a person wearing a {noun}." if option == "yes" else
                         f"a photo of a person without a {noun}.")  # fmt: skip
        elif cat.key == "type":
            texts.append(f"a photo of a person wearing a {option}.")
        elif cat.group == 0:
            texts.append(f"a photo of a person whose {words} is {option}.")
            texts.append(f"a photo of a {option} person.")
        else:
            part = words if words.startswith(thing) else f"{thing} {words}"
            texts.append(f"a photo of a person whose {part} is {option}.")
            texts.append(f"a photo of a person with a {option} {thing}.")
        out[option] = texts
    return out


def square_crop(image: np.ndarray, box: Sequence[float], margin: float = 0.05) -> Any:
    """The person's box plus ``margin``, padded (not cut) to a square with grey, as a PIL image.

    CLIP processors resize the short side and centre-crop; a standing person's crop is tall, and the
    centre crop would cut off the head and the shoes. Padding keeps the whole person in view.
    """
    from PIL import Image

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
    x1, y1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        x0, y0, x1, y1 = 0, 0, w, h
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
    side = max(crop.shape[:2])
    canvas = np.full((side, side, 3), 127, np.uint8)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return Image.fromarray(canvas)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


class CLIPLabeler(Labeler):
    """Zero-shot answers for every category from a local CLIP or SigLIP checkpoint, batched over persons."""

    name = "clip"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        taxonomy: Taxonomy | None = None,
        device: str = "cpu",
        dtype: Any = None,
        device_map: str | None = None,
        temperature: float = 1.0,
        batch_size: int = 32,
        margin: float = 0.05,
    ) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoProcessor
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingExtra("the CLIP labeler", "ml", "transformers") from exc
        from annotate_anyone.executors.gpu import checkpoint_version

        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise ConfigError(f"no transformers checkpoint in {path} (config.json missing)")
        if temperature <= 0:
            raise ConfigError(f"CLIP temperature must be > 0, got {temperature}")
        kwargs: dict[str, Any] = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if device_map:
            kwargs["device_map"] = device_map
        self.model = AutoModel.from_pretrained(str(path), **kwargs).eval()
        self.family = self.model.config.model_type
        if self.family not in FAMILIES:
            raise ConfigError(f"{path} is a {self.family!r} model; the CLIP labeler loads {' or '.join(FAMILIES)}")
        if not device_map:
            self.model.to(device)
        self.device = str(next(self.model.parameters()).device)
        self.processor = AutoProcessor.from_pretrained(str(path))
        self.taxonomy = taxonomy or load_taxonomy()
        self.temperature = float(temperature)
        self.batch_size = max(1, int(batch_size))
        self.margin = margin
        self.model_version = f"clip:{path.name}:{checkpoint_version(path)}"
        self._torch = torch
        self._text: dict[tuple[str, str, tuple[str, ...]], np.ndarray] = {}  # (taxonomy version, cat, options)
        self._batcher: Any = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, **options: Any) -> CLIPLabeler:
        return cls(checkpoint, **options)

    # -- text side: per-option ensembled prompt embeddings, cached per taxonomy -----------------------------
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = []
        padding: Any = "max_length" if self.family == "siglip" else True
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 64)
        for lo in range(0, len(texts), 256):
            enc = self.processor.tokenizer(texts[lo : lo + 256], padding=padding, truncation=True,
                                           max_length=max_len, return_tensors="pt")  # fmt: skip
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            if self.family == "siglip":
                enc.pop("attention_mask", None)  # SigLIP was trained without one (pads are read)
            with torch.inference_mode():
                emb = self.model.get_text_features(**enc)
            emb = getattr(emb, "pooler_output", emb)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def text_embeddings(self, categories: Sequence[Category]) -> list[np.ndarray]:
        """Per category an (options, dim) matrix of ensembled, normalised prompt embeddings (cached)."""
        keys = [(self.taxonomy.version, c.id, tuple(c.options)) for c in categories]
        missing = [(k, c) for k, c in zip(keys, categories, strict=True) if k not in self._text]
        if missing:
            texts: list[str] = []
            spans: list[list[tuple[int, int]]] = []
            for _, cat in missing:
                prompts = prompt_texts(self.taxonomy, cat)
                cat_spans = []
                for option in cat.options:
                    cat_spans.append((len(texts), len(texts) + len(prompts[option])))
                    texts.extend(prompts[option])
                spans.append(cat_spans)
            emb = self._encode_texts(texts)
            for (key, _), cat_spans in zip(missing, spans, strict=True):
                mean = np.stack([emb[a:b].mean(0) for a, b in cat_spans])
                self._text[key] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return [self._text[k] for k in keys]

    # -- image side ---------------------------------------------------------------------------------------
    def _crop(self, ctx: PersonContext) -> Any:
        return square_crop(ctx.image, ctx.person.box, self.margin)

    def _embed_images(self, images: Sequence[Any]) -> list[np.ndarray]:
        torch = self._torch
        out: list[np.ndarray] = []
        for lo in range(0, len(images), self.batch_size):
            pv = self.processor.image_processor(images=list(images[lo : lo + self.batch_size]), return_tensors="pt")
            pixels = pv["pixel_values"].to(self.device, dtype=next(self.model.parameters()).dtype)
            with torch.inference_mode():
                emb = self.model.get_image_features(pixel_values=pixels)
            emb = getattr(emb, "pooler_output", emb)
            out.extend(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return out

    def use_batcher(self, batcher: Any) -> None:
        """Route image embedding through a :class:`~annotate_anyone.executors.gpu.DynamicBatcher`."""
        self._batcher = batcher

    def embed_images(self, images: Sequence[Any]) -> list[np.ndarray]:
        if self._batcher is not None:
            return list(self._batcher.run(list(images)))
        return self._embed_images(images)

    def embed(self, ctx: PersonContext) -> np.ndarray:
        """The crop's normalised image embedding (features for the learned heads)."""
        return self.embed_images([self._crop(ctx)])[0]

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp().cpu())

    # -- labelling ----------------------------------------------------------------------------------------
    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        return self.label_many([ctx], categories)[0]

    def label_many(self, ctxs: Sequence[PersonContext], categories: Sequence[Category]) -> list[list[Prediction]]:
        """Every person's crop in batches of ``batch_size``, one matrix product per category."""
        if not ctxs:
            return []
        if not categories:
            return [[] for _ in ctxs]
        texts = self.text_embeddings(categories)
        images = np.stack(self.embed_images([self._crop(c) for c in ctxs]))
        scale = self.logit_scale / self.temperature
        out: list[list[Prediction]] = [[] for _ in ctxs]
        for cat, t in zip(categories, texts, strict=True):
            logits = scale * (images @ t.T)  # (persons, options)
            for i, row in enumerate(logits):
                dist = dict(zip(cat.options, _softmax(row).tolist(), strict=True))
                out[i].append(Prediction.from_distribution(cat, dist, self.model_version))
        return out


# -- the cascade ----------------------------------------------------------------------------------------
@dataclass
class CascadeStats:
    persons: int = 0
    categories: int = 0  # (person, category) pairs answered by the first labeler
    escalated: int = 0  # pairs sent to the second labeler
    by_category: dict[str, int] = field(default_factory=dict)  # escalations per category


class CascadeLabeler(Labeler):
    """``first`` answers everything; categories whose calibrated confidence is below ``gate`` go to ``second``.

    Both labelers' predictions are returned (each with its own model version), so the service's
    calibration, gold accuracy and routing see the first pass everywhere and the second where it ran.
    """

    name = "cascade"

    def __init__(
        self,
        first: Labeler,
        second: Labeler,
        *,
        gate: float = 0.9,
        calibrators: Mapping[str, Calibrator] | None = None,
        trust_uncalibrated: bool = False,
    ) -> None:
        if not 0.0 <= gate <= 1.0:
            raise ConfigError(f"cascade gate must be within 0..1, got {gate}")
        self.first, self.second = first, second
        self.gate = float(gate)
        self.calibrators: dict[str, Calibrator] = dict(calibrators or {})
        self.trust_uncalibrated = trust_uncalibrated
        self.model_version = f"cascade:{first.model_version}>{second.model_version}"
        self.stats = CascadeStats()

    def set_calibration(self, calibrators: Mapping[str, Calibrator]) -> None:
        """Per category id, the first labeler's calibrator (replaces those given before for those ids)."""
        self.calibrators.update(calibrators)

    def confidence(self, pred: Prediction) -> float | None:
        """The first labeler's calibrated top probability (None when the category is not calibrated)."""
        cal = self.calibrators.get(pred.category)
        if cal is None:
            return pred.confidence if self.trust_uncalibrated else None
        return max(cal.calibrate(pred.distribution).values())

    def unsure(self, preds: Sequence[Prediction], categories: Sequence[Category]) -> list[Category]:
        """The categories the second labeler must answer: no first answer, uncalibrated, or below the gate."""
        by_cat = {p.category: p for p in preds}
        out = []
        for cat in categories:
            pred = by_cat.get(cat.id)
            conf = None if pred is None else self.confidence(pred)
            if conf is None or conf < self.gate:
                out.append(cat)
        return out

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        return self.label_many([ctx], categories)[0]

    def label_many(self, ctxs: Sequence[PersonContext], categories: Sequence[Category]) -> list[list[Prediction]]:
        """First pass over all persons at once; persons with the same unsure categories go to ``second`` together."""
        firsts = self.first.label_many(ctxs, categories)
        out: list[list[Prediction]] = [list(preds) for preds in firsts]
        by_unsure: dict[tuple[str, ...], list[int]] = {}
        unsure_cats: dict[tuple[str, ...], list[Category]] = {}
        for i, preds in enumerate(firsts):
            unsure = self.unsure(preds, categories)
            self.stats.persons += 1
            self.stats.categories += len(categories)
            self.stats.escalated += len(unsure)
            for cat in unsure:
                self.stats.by_category[cat.id] = self.stats.by_category.get(cat.id, 0) + 1
            if unsure:
                key = tuple(c.id for c in unsure)
                by_unsure.setdefault(key, []).append(i)
                unsure_cats[key] = unsure
        for key, idx in by_unsure.items():
            for i, preds in zip(idx, self.second.label_many([ctxs[i] for i in idx], unsure_cats[key]), strict=True):
                out[i].extend(preds)
        return out

    def prepare(self, session: Any) -> None:
        """Take the first labeler's calibration from the rows the service fitted on human answers."""
        self.set_calibration(calibrators_from_session(session, self.first.model_version))

    def fit_on_gold(
        self,
        ctxs: Sequence[PersonContext],
        truths: Sequence[Mapping[str, str]],
        categories: Sequence[Category],
        *,
        method: Method = "temperature",
        target: float = 0.95,
        min_n: int = 10,
    ) -> dict[str, CalibrationResult]:
        """Calibrate the first labeler per category on gold persons (``truths``: category id -> value).

        Categories with fewer than ``min_n`` gold answers keep no calibrator (so they are escalated).
        """
        if len(ctxs) != len(truths):
            raise InvalidInput("fit_on_gold needs one truth mapping per person")
        preds = self.first.label_many(ctxs, categories)
        results: dict[str, CalibrationResult] = {}
        for cat in categories:
            dists, answers = [], []
            for person_preds, truth in zip(preds, truths, strict=True):
                value = truth.get(cat.id)
                pred = next((p for p in person_preds if p.category == cat.id), None)
                if value is not None and pred is not None:
                    dists.append(pred.distribution)
                    answers.append(value)
            if len(answers) >= min_n:
                results[cat.id] = fit_calibration(dists, answers, method=method, target=target)
        self.set_calibration({c: r.calibrator for c, r in results.items()})
        return results


def calibrators_from_session(session: Any, model_version: str) -> dict[str, Calibrator]:
    """The calibrators the service fitted on human answers for ``model_version`` (category id -> calibrator)."""
    from sqlalchemy import select

    from annotate_anyone.annotation.models import CalibrationRecord

    rows = session.scalars(select(CalibrationRecord).where(CalibrationRecord.model_version == model_version))
    return {f"{r.group}.{r.key}": Calibrator.from_params(r.params) for r in rows}


# -- the model-backed labelers of a process ---------------------------------------------------------------
def model_labelers(
    config: AnnotationConfig, models: ModelsConfig | None, taxonomy: Taxonomy
) -> tuple[list[Labeler], Any]:
    """The model-backed labelers the settings name, each loaded once per process: ``(labelers, vlm)``.

    ``config`` is the :class:`~annotate_anyone.annotation.settings.AnnotationConfig` (``vlm_checkpoint``),
    ``models`` the ``ModelsConfig`` (``clip_checkpoint``, ``cascade_gate``, device, dtype, device_map,
    batching; None: CPU defaults). CLIP alone is one more labeler; CLIP and a VLM make one
    :class:`CascadeLabeler`, so the VLM answers only the categories CLIP is unsure of.
    """
    clip_ckpt = models.clip_checkpoint if models is not None else None
    if not clip_ckpt and not config.vlm_checkpoint:
        return [], None  # no model configured: nothing to load (torch is not needed)
    from annotate_anyone.executors.gpu import DynamicBatcher, load_once, resolve_device, resolve_dtype
    from annotate_anyone.settings import ModelsConfig

    if models is None:  # no models section: ModelsConfig's defaults, on the annotation config's device
        models, device = ModelsConfig(), config.device
    else:
        device = resolve_device(models.device)
    torch_dtype = resolve_dtype(models.dtype, device)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    device_map = models.device_map
    batch_size = models.batch_size
    wait_s = models.batch_wait_ms / 1000.0
    vlm = None
    if config.vlm_checkpoint:
        from annotate_anyone.annotation.labelers.vlm import VLMLabeler

        ckpt = config.vlm_checkpoint
        vlm = load_once("vlm", ckpt, lambda: VLMLabeler.from_checkpoint(ckpt, device=device, dtype=dtype_name,
                                                                        device_map=device_map),
                        device=device, dtype=dtype_name)  # fmt: skip
    if not clip_ckpt:
        return ([vlm] if vlm is not None else []), vlm

    def build() -> CLIPLabeler:
        labeler = CLIPLabeler(clip_ckpt, taxonomy=taxonomy, device=device, dtype=torch_dtype,
                              device_map=device_map, batch_size=batch_size)  # fmt: skip
        labeler.use_batcher(DynamicBatcher(labeler._embed_images, max_batch=batch_size, max_wait_s=wait_s))
        labeler.text_embeddings(taxonomy.categories())  # the prompts are embedded once, at load
        return labeler

    clip = load_once("clip", clip_ckpt, build, device=device, dtype=dtype_name, device_map=device_map,
                     taxonomy=taxonomy.version, batch=(batch_size, wait_s))  # fmt: skip
    if vlm is None:
        return [clip], None
    return [CascadeLabeler(clip, vlm, gate=float(getattr(models, "cascade_gate", 0.9)))], vlm
