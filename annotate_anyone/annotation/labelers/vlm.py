"""VLM labeler: scores every allowed option of every question by its likelihood under a local VLM.

Works with transformers image-text-to-text checkpoints that place image features at image-token
positions (BLIP-2, InstructBLIP, LLaVA and their kin). Per image, the vision side runs once (once
per question for InstructBLIP, whose Q-Former reads the question); then one batched language-model
forward scores all ``(question, option)`` rows: the log-probability of the option's tokens after the
prompt, softmaxed over each question's options. No text is generated and nothing is parsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.taxonomy import Category
from annotate_anyone.errors import ConfigError, MissingExtra

PROMPTS = {
    "llava": "USER: <image>\n{question} Answer with one phrase. ASSISTANT:",
    "default": "Question: {question} Answer:",
}
NA_TEXT = "not visible"


@dataclass(slots=True)
class _Row:
    unit: int  # which image-feature unit (image, or image+question for InstructBLIP)
    question: int
    ids: list[int]
    start: int  # first option token
    end: int


class OptionScorer:
    """Loads a local VLM checkpoint and scores options by likelihood, batched."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "cpu",
        max_batch: int = 512,
        prompt: str | None = None,
        reduce: Literal["sum", "mean"] = "sum",
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingExtra("the VLM labeler", "ml", "transformers") from exc
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise ConfigError(f"no transformers checkpoint in {path}")
        self.processor = AutoProcessor.from_pretrained(str(path))
        self.model = AutoModelForImageTextToText.from_pretrained(str(path)).to(device).eval()
        self.tokenizer = self.processor.tokenizer
        self.device = device
        self.max_batch = max_batch
        self.reduce = reduce
        self.model_type = self.model.config.model_type
        self.per_question_vision = self.model_type.startswith("instructblip")
        self.prompt = prompt or PROMPTS.get(self.model_type, PROMPTS["default"])
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:8]
        self.model_version = f"vlm:{path.name}:{digest}"
        self._torch = torch
        self._option_cache: dict[str, list[int]] = {}

    # -- inputs ----------------------------------------------------------------------------------
    def _encode(self, image: Any, questions: Sequence[str]) -> tuple[dict[str, Any], list[list[int]]]:
        """Pixel values of ``image`` and the token ids (image tokens included) of every prompt.

        The prompts are tokenized alongside a thumbnail of the image, so the processor lays out the
        image tokens without resizing the full image once per question.
        """
        prompts = [self.prompt.format(question=q) for q in questions]
        full = self.processor(images=[image], text=prompts[:1])
        thumb = image.copy()
        thumb.thumbnail((32, 32))
        enc = self.processor(images=[thumb] * len(prompts), text=prompts)
        enc["pixel_values"] = full["pixel_values"]
        return enc, [list(ids) for ids in enc["input_ids"]]

    def _option_ids(self, option: str) -> list[int]:
        ids = self._option_cache.get(option)
        if ids is None:
            ids = self._option_cache[option] = list(
                self.tokenizer(" " + self.option_text(option), add_special_tokens=False)["input_ids"]
            )
        return ids

    def _features(self, enc: dict[str, Any]) -> Any:
        """Image features per unit: one unit (the image) or one per question (InstructBLIP)."""
        torch = self._torch
        pv = torch.as_tensor(np.asarray(enc["pixel_values"]), device=self.device)
        if self.per_question_vision:
            q_ids = self._pad([list(x) for x in enc["qformer_input_ids"]], self.tokenizer.pad_token_id or 0)
            return self.model.get_image_features(
                pixel_values=pv, qformer_input_ids=q_ids[0], qformer_attention_mask=q_ids[1], return_dict=True
            )
        return self.model.get_image_features(pixel_values=pv[:1], return_dict=True)

    def _pad(self, seqs: list[list[int]], pad: int) -> tuple[Any, Any]:
        torch = self._torch
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _select(features: Any, units: list[int]) -> Any:
        """A copy of the encoder output whose features are repeated/selected per batch row."""
        out = type(features)(**{k: v for k, v in features.items()})
        pooled = features.pooler_output
        if isinstance(pooled, (list, tuple)):
            out.pooler_output = [pooled[u] for u in units]
        else:
            out.pooler_output = pooled[units]
        return out

    def option_text(self, option: str) -> str:
        return NA_TEXT if option == "n/a" else option

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, image: Any, questions: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Log-likelihood of every option of every question, in one batched pass (chunked by ``max_batch``)."""
        torch = self._torch
        enc, prefixes = self._encode(image, [q for q, _ in questions])
        rows: list[_Row] = []
        for qi, ((_, options), prefix) in enumerate(zip(questions, prefixes, strict=True)):
            for option in options:
                opt_ids = self._option_ids(option)
                rows.append(_Row(qi if self.per_question_vision else 0, qi, prefix + opt_ids, len(prefix),
                                 len(prefix) + len(opt_ids)))  # fmt: skip
        scores = np.zeros(len(rows), np.float64)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode():
            features = self._features(enc)
            for lo in range(0, len(rows), self.max_batch):
                chunk = rows[lo : lo + self.max_batch]
                ids, mask = self._pad([r.ids for r in chunk], pad)
                outputs = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    pixel_values=None,
                    mm_encoder_outputs={"image": self._select(features, [r.unit for r in chunk])},
                )
                # Only the positions that predict option tokens: (row, position) pairs, one log-softmax.
                row_idx = torch.tensor([j for j, r in enumerate(chunk) for _ in range(r.start, r.end)])
                pos_idx = torch.tensor([t - 1 for r in chunk for t in range(r.start, r.end)])
                picked = outputs.logits[row_idx, pos_idx].float().log_softmax(-1)
                token_lp = picked.gather(-1, ids[row_idx, pos_idx + 1][:, None]).squeeze(-1)
                total = torch.zeros(len(chunk), dtype=torch.float64).index_add_(0, row_idx, token_lp.double())
                if self.reduce == "mean":
                    total = total / torch.tensor([max(1, r.end - r.start) for r in chunk], dtype=torch.float64)
                scores[lo : lo + len(chunk)] = total.cpu().numpy()
        out, i = [], 0
        for _, options in questions:
            out.append(scores[i : i + len(options)])
            i += len(options)
        return out

    def generate_answer(self, image: Any, question: str, max_new_tokens: int = 8) -> str:
        """Free-text answer by ``generate`` (the slow baseline; answers need mapping onto options)."""
        torch = self._torch
        enc = self.processor(images=[image], text=[self.prompt.format(question=question)], return_tensors="pt")
        enc = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, enc["input_ids"].shape[1] :] if out.shape[1] > enc["input_ids"].shape[1] else out[0]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def vision_embedding(self, image: Any) -> np.ndarray:
        """Mean-pooled last hidden state of the vision encoder (features for the learned heads)."""
        torch = self._torch
        pv = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            vision = self.model.model.vision_model if hasattr(self.model, "model") and hasattr(
                self.model.model, "vision_model") else getattr(self.model, "vision_model", None)  # fmt: skip
            if vision is None:
                hidden = self.model.get_image_features(pixel_values=pv, return_dict=True).last_hidden_state
            else:
                hidden = vision(pixel_values=pv).last_hidden_state
        return hidden.float().mean(dim=1)[0].cpu().numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def crop_person(image: np.ndarray, box: Sequence[float], margin: float = 0.05) -> Any:
    """The person's box (plus a margin) as a PIL image."""
    from PIL import Image

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
    x1, y1 = int(min(w, x1 + mx)), int(min(h, y1 + my))
    if x1 - x0 < 2 or y1 - y0 < 2:
        x0, y0, x1, y1 = 0, 0, w, h
    return Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1, :3]))


class VLMLabeler(Labeler):
    """Answers every requested category for a person with one batched option-scoring pass."""

    name = "vlm"

    def __init__(self, scorer: OptionScorer) -> None:
        self.scorer = scorer
        self.model_version = scorer.model_version

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, **options: Any) -> VLMLabeler:
        return cls(OptionScorer(checkpoint, **options))

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        if not categories:
            return []
        image = crop_person(ctx.image, ctx.person.box)
        scores = self.scorer.score(image, [(c.question, c.options) for c in categories])
        out = []
        for cat, s in zip(categories, scores, strict=True):
            dist = dict(zip(cat.options, softmax(s).tolist(), strict=True))
            out.append(Prediction.from_distribution(cat, dist, self.model_version))
        return out

    def embed(self, ctx: PersonContext) -> np.ndarray:
        return self.scorer.vision_embedding(crop_person(ctx.image, ctx.person.box))
