"""VLM labeler over transformers' generic image-text-to-text API, scoring options by likelihood.

Any local checkpoint folder that ``AutoProcessor`` / ``AutoModelForImageTextToText`` load works; family
quirks (how to load the processor, how text positions continue after the image) live in small adapters
in :mod:`annotate_anyone.annotation.vlm_adapters`: Qwen2-VL / Qwen2.5-VL, LLaVA (1.5, OneVision),
Idefics3 / SmolVLM, BLIP-2 and InstructBLIP. The prompt is the processor's chat template (user turn: the
image, then the question; generation prompt on), or ``Question: {q} Answer:`` where there is none.

Scoring (``OptionScorer.score`` / ``score_many``), with the shared prefix computed once:

1. the person crop (box plus margin) and the part of the prompt up to the image are encoded once per
   person (once per person and question for InstructBLIP, whose Q-Former reads the question); the KV
   cache of that prefix is kept;
2. every question's remaining prompt tokens run as a continuation from the expanded prefix cache, batched
   over questions and persons (left-aligned after the prefix, padding masked, explicit positions);
3. every allowed value runs as a continuation of its question's cache, batched over values, questions
   and persons. Only the positions that predict option tokens go through the LM head.

The score of a value is the sum (or mean) of its tokens' log-probabilities; the labeler softmaxes them over
each question's values. Nothing is generated and nothing is parsed.

Differentiable, non-cached path (for LoRA fine-tuning on human answers, ``annotation/finetune.py``)::

    scorer = OptionScorer(checkpoint, device="cpu", dtype=None)   # scorer.model may be wrapped by peft
    out = option_logprobs(scorer, items, normalize=True)
    # items: Sequence[tuple[PIL.Image.Image, str, Sequence[str]]]  -- (person crop, question, allowed values)
    # out:   list[torch.Tensor], one 1-D tensor per item, len(values), on scorer.device, WITH grad:
    #        log-likelihood of each value's tokens after the prompt (sum over tokens, or mean if
    #        scorer.reduce == "mean"); with normalize=True log_softmax over the item's values, so the
    #        cross-entropy loss of a human answer is ``-out[i][values.index(answer)]``.

It runs one full forward (image + prompt + value) per (item, value) row, batched per item, under whatever
grad mode and train/eval mode the caller set (it does not switch them). ``scorer.model`` is the
``AutoModelForImageTextToText`` instance; replace it (e.g. by ``peft.get_peft_model(scorer.model, cfg)``)
and both paths use the replacement. The cached path equals it to 1e-4 in fp32 (``tests/unit/test_vlm_*``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.taxonomy import Category
from annotate_anyone.errors import ConfigError, MissingExtra

NA_TEXT = "not visible"
DEFAULT_PROMPT = "Question: {question} Answer:"
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass(slots=True)
class _Prompt:
    """One question's tokens after the image prefix, and the separator its answers start with."""

    suffix: list[int]
    qformer_text: str = ""


@dataclass(slots=True)
class _Prefix:
    """The KV cache of an encoded image prefix (one row per unit) and what continuations need."""

    cache: Any
    mask: Any  # (units, Lp) attention mask
    length: Any  # (units,) real prefix length (next text position before any offset)
    offset: Any  # (units,) position offset of text after the image (Qwen's rope delta; else 0)
    extra: dict[str, Any] = field(default_factory=dict)


def _select_cache(cache: Any, idx: Any) -> Any:
    """A new cache holding rows ``idx`` of ``cache`` (the original is left untouched)."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in new.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, idx)
            layer.values = layer.values.index_select(0, idx)
    return new


class OptionScorer:
    """Loads a local VLM checkpoint folder and scores allowed values by likelihood, batched."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        device_map: str | dict[str, Any] | None = None,
        max_batch: int = 512,
        prompt: str | None = None,
        reduce: Literal["sum", "mean"] = "sum",
    ) -> None:
        """``dtype``: a torch dtype name (default fp32 on CPU, bf16 elsewhere); ``device_map`` (e.g. ``"auto"``)
        spreads a model larger than one GPU over several (inputs then go to the embeddings' device)."""
        try:
            import torch
            from transformers import AutoModelForImageTextToText
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingExtra("the VLM labeler", "ml", "transformers") from exc
        from annotate_anyone.annotation.vlm_adapters import adapter_for

        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise ConfigError(f"no transformers checkpoint in {path} (config.json missing)")
        adapter = adapter_for(path)
        processor = adapter.load_processor(path)
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if device == "cpu" else torch.bfloat16)
        if device_map is not None:
            model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch_dtype, device_map=device_map)
            device = str(model.get_input_embeddings().weight.device)
        else:
            model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch_dtype).to(device)
        model.eval()
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:8]
        self._setup(model, processor, adapter, f"vlm:{path.name}:{digest}", device, max_batch, prompt, reduce)

    @classmethod
    def from_parts(
        cls,
        model: Any,
        processor: Any,
        *,
        model_version: str,
        device: str = "cpu",
        max_batch: int = 512,
        prompt: str | None = None,
        reduce: Literal["sum", "mean"] = "sum",
    ) -> OptionScorer:
        """A scorer over an already built model and processor (benchmarks of random full-size models)."""
        from annotate_anyone.annotation.vlm_adapters import adapter_for_model_type

        self = cls.__new__(cls)
        adapter = adapter_for_model_type(model.config.model_type)
        self._setup(model.eval(), processor, adapter, model_version, device, max_batch, prompt, reduce)
        return self

    def _setup(
        self,
        model: Any,
        processor: Any,
        adapter: Any,
        model_version: str,
        device: str,
        max_batch: int,
        prompt: str | None,
        reduce: Literal["sum", "mean"],
    ) -> None:
        import torch

        self.adapter, self.processor, self.model = adapter, processor, model
        self.tokenizer = processor.tokenizer
        self.device = device
        self.max_batch = max_batch
        # bytes of copied KV cache one chunk may hold (a chunk copies the prefix cache once per row)
        self.cache_budget = float(8 * 2**30 if str(device).startswith("cuda") else 2 * 2**30)
        self.reduce = reduce
        self.model_type = model.config.model_type
        self.prompt_template = prompt
        self.model_version = model_version
        self._torch = torch
        self._prompts: dict[str, _Prompt] = {}
        self._text_split_ok: bool | None = None  # the tokenizer alone gives the processor's question tokens
        self._options: dict[tuple[str, str], list[int]] = {}
        self._prefix_text, self._sep = self._split_template()

    # -- prompt layout -----------------------------------------------------------------------------
    def prompt(self, question: str) -> str:
        """The whole prompt text for ``question`` (chat template, or the plain ``Question: .. Answer:``)."""
        if self.prompt_template is None and getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return (self.prompt_template or DEFAULT_PROMPT).format(question=question)

    def _split_template(self) -> tuple[str, str]:
        """The prompt text before the question (the same for every question) and the answer separator."""
        a, b = self.prompt("\x00A\x00"), self.prompt("\x00B\x00")
        head = a.split("\x00A\x00")[0]
        if b.split("\x00B\x00")[0] != head:
            raise ConfigError("the prompt before the question depends on the question; cannot share a prefix")
        head = self.adapter.prefix_text(head)
        return head, "" if a[-1:].isspace() else " "

    def _reference_image(self) -> Any:
        from PIL import Image

        return Image.new("RGB", (64, 96), (128, 128, 128))

    def _prompt_ids(self, question: str) -> _Prompt:
        """Tokens of the prompt after the image prefix, exactly as the processor lays out the full prompt.

        The processor (with a reference image) is the authority; the plain tokenizer gives the same tokens
        after the image prefix when the prefix ends at a token boundary, which is checked on the first
        question. Then the tokenizer is used (no image processing per question); otherwise the processor.
        """
        got = self._prompts.get(question)
        if got is None:
            full = self.prompt(question)
            by_text = self._suffix_by_tokenizer(full) if self._text_split_ok is not False else None
            if self._text_split_ok is None:
                by_processor = self._suffix_by_processor(full)
                self._text_split_ok = by_text == by_processor
                by_text = by_processor
            suffix = by_text if by_text is not None else self._suffix_by_processor(full)
            got = self._prompts[question] = _Prompt(suffix, full)
        return got

    def _suffix_by_processor(self, full: str) -> list[int]:
        ref = self._reference_image()
        ids_full = list(self.processor(images=[ref], text=[full])["input_ids"][0])
        ids_head = list(self.processor(images=[ref], text=[self._prefix_text])["input_ids"][0])
        if ids_full[: len(ids_head)] != ids_head:
            raise ConfigError(f"{self.model_type}: the processor does not tokenize the prompt as prefix + question")
        return [int(i) for i in ids_full[len(ids_head) :]]

    def _suffix_by_tokenizer(self, full: str) -> list[int] | None:
        ids_full = list(self.tokenizer(full)["input_ids"])
        ids_head = list(self.tokenizer(self._prefix_text)["input_ids"])
        if ids_full[: len(ids_head)] != ids_head:
            return None
        return [int(i) for i in ids_full[len(ids_head) :]]

    def option_text(self, option: str) -> str:
        return NA_TEXT if option == "n/a" else option

    def _option_ids(self, option: str) -> list[int]:
        key = (self._sep, option)
        ids = self._options.get(key)
        if ids is None:
            ids = self._options[key] = list(
                self.tokenizer(self._sep + self.option_text(option), add_special_tokens=False)["input_ids"]
            )
        return ids

    # -- model pieces ------------------------------------------------------------------------------
    def _pad(self, seqs: Sequence[Sequence[int]], pad: int | None = None) -> tuple[Any, Any]:
        """Right-padded ids and their mask (built in numpy: one tensor copy, not one per row)."""
        torch = self._torch
        pad = pad if pad is not None else (self.tokenizer.pad_token_id or 0)
        lengths = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
        n = max(1, int(lengths.max(initial=0)))
        mask = np.arange(n)[None, :] < lengths[:, None]
        ids = np.full((len(seqs), n), pad, np.int64)
        ids[mask] = np.fromiter((t for s in seqs for t in s), np.int64, int(lengths.sum()))
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask.astype(np.int64)).to(self.device)

    def _to_device(self, enc: Any) -> dict[str, Any]:
        out = {}
        for k, v in dict(enc).items():
            if hasattr(v, "to"):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.model.dtype)
            out[k] = v
        return out

    def _encode_prefix(self, images: Sequence[Any], questions: Sequence[str]) -> _Prefix:
        """Step 1: the image prefix of each unit (a person; a person+question where the adapter says so)."""
        torch = self._torch
        texts = [self._prefix_text] * len(images)
        enc = self.adapter.prefix_inputs(self, images, texts, questions)
        enc = self._to_device(enc)
        out = self.model(**enc, use_cache=True, return_dict=True, logits_to_keep=1)
        cache = self.adapter.cache_of(out)
        mask = enc["attention_mask"]
        length = mask.sum(-1)
        offset = self.adapter.text_position_offset(self.model, enc, out)
        if offset is None:
            offset = torch.zeros_like(length)
        return _Prefix(cache, mask, length, offset)

    def _decode(self, cache: Any, ids: Any, mask: Any, positions: Any) -> Any:
        """Run text tokens as a continuation of ``cache`` (mutated); returns the last hidden states."""
        decoder = self.adapter.text_decoder(self.model)
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, return_dict=True,
                      **{cache_arg: cache})  # fmt: skip
        return out.last_hidden_state

    def _head_logprobs(self, hidden: Any) -> Any:
        return self.model.get_output_embeddings()(hidden).float().log_softmax(-1)

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, image: Any, questions: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Log-likelihood of every value of every question for one image (see ``score_many``)."""
        return self.score_many([image], questions)[0]

    def score_many(
        self, images: Sequence[Any], questions: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[np.ndarray]]:
        """Per image, per question, the log-likelihood of each allowed value, with every prefix computed once.

        Images whose prefixes have the same token length are encoded together; rows are chunked by
        ``max_batch``.
        """
        if not questions:
            return [[] for _ in images]
        prompts = [self._prompt_ids(q) for q, _ in questions]
        result: list[list[np.ndarray]] = [[] for _ in images]
        torch = self._torch
        with torch.inference_mode():
            for group in self._groups(images):
                scores = self._score_group([images[i] for i in group], questions, prompts)
                for i, s in zip(group, scores, strict=True):
                    result[i] = s
        return result

    def _groups(self, images: Sequence[Any]) -> list[list[int]]:
        if len(images) == 1:
            return [[0]]
        lengths: dict[int, list[int]] = {}
        for i, img in enumerate(images):
            n = len(self.processor(images=[img], text=[self._prefix_text])["input_ids"][0])
            lengths.setdefault(n, []).append(i)
        return list(lengths.values())

    def _score_group(
        self, images: Sequence[Any], questions: Sequence[tuple[str, Sequence[str]]], prompts: Sequence[_Prompt]
    ) -> list[list[np.ndarray]]:
        torch = self._torch
        nq = len(questions)
        per_question = self.adapter.question_conditioned_vision
        if per_question:  # InstructBLIP: one unit per (person, question)
            unit_images = [img for img in images for _ in range(nq)]
            unit_questions = [p.qformer_text for _ in images for p in prompts]
        else:
            unit_images, unit_questions = list(images), [""] * len(images)
        prefix = self._encode_prefix(unit_images, unit_questions)

        # Rows per chunk: the requested maximum, or fewer where the copied prefix caches would not fit.
        per_row = sum(t[:1].numel() * t.element_size() for layer in prefix.cache.layers
                      for t in (layer.keys, layer.values) if t is not None)  # fmt: skip
        step = max(1, min(self.max_batch, int(self.cache_budget // max(1, 2 * per_row))))

        q_rows = [(p, q) for p in range(len(images)) for q in range(nq)]
        q_unit = [p * nq + q if per_question else p for p, q in q_rows]
        o_rows = [(r, opt) for r, (_, q) in enumerate(q_rows) for opt in questions[q][1]]
        o_ids = [self._option_ids(opt) for _, opt in o_rows]
        totals = np.zeros(len(o_rows), np.float64)
        counts = np.array([len(i) for i in o_ids], np.float64)
        by_q: list[list[int]] = [[] for _ in q_rows]
        for k, (r, _) in enumerate(o_rows):
            by_q[r].append(k)
        for lo in range(0, len(q_rows), step):
            # Step 2: the question's tokens after the prefix, one row per (person, question).
            rows = list(range(lo, min(len(q_rows), lo + step)))
            unit = torch.tensor([q_unit[r] for r in rows], device=self.device)
            ids, smask = self._pad([prompts[q_rows[r][1]].suffix for r in rows])
            mask = torch.cat([prefix.mask[unit], smask], 1)
            start = (prefix.length + prefix.offset)[unit]
            pos = start[:, None] + torch.arange(ids.shape[1], device=self.device)[None]
            cache = _select_cache(prefix.cache, unit)
            hidden = self._decode(cache, ids, mask, pos)
            last = smask.sum(-1) - 1
            lp = self._head_logprobs(hidden[torch.arange(len(rows), device=self.device), last])
            ks = [k for r in rows for k in by_q[r] if o_ids[k]]
            j_idx = torch.tensor([o_rows[k][0] - lo for k in ks], device=self.device)
            t_idx = torch.tensor([o_ids[k][0] for k in ks], device=self.device)
            totals[ks] = lp[j_idx, t_idx].double().cpu().numpy()  # first value token, from the question's end
            nxt = start + last + 1
            # Step 3: the rest of each value's tokens, one row per (person, question, value), from that cache.
            longer = [k for r in rows for k in by_q[r] if len(o_ids[k]) > 1]
            for c_lo in range(0, len(longer), step):
                chunk = longer[c_lo : c_lo + step]
                local = torch.tensor([o_rows[k][0] - lo for k in chunk], device=self.device)
                seqs = [o_ids[k] for k in chunk]
                ids, omask = self._pad([s[:-1] for s in seqs])
                targets, _ = self._pad([s[1:] for s in seqs], pad=0)
                pos = nxt[local][:, None] + torch.arange(ids.shape[1], device=self.device)[None]
                hidden = self._decode(_select_cache(cache, local), ids, torch.cat([mask[local], omask], 1), pos)
                sel = omask.bool()
                lp = self._head_logprobs(hidden[sel]).gather(-1, targets[sel][:, None]).squeeze(-1)
                row_of = torch.arange(len(chunk), device=self.device)[:, None].expand_as(sel)[sel]
                sums = torch.zeros(len(chunk), dtype=torch.float64, device=self.device)
                sums.index_add_(0, row_of, lp.double())
                totals[chunk] += sums.cpu().numpy()
            del cache, hidden
        if self.reduce == "mean":
            totals = totals / np.maximum(counts, 1)
        out: list[list[np.ndarray]] = [[] for _ in images]
        k = 0
        for p, q in q_rows:
            n = len(questions[q][1])
            out[p].append(totals[k : k + n])
            k += n
        return out

    # -- full-sequence path (differentiable) ------------------------------------------------------
    def full_inputs(self, image: Any, question: str, options: Sequence[str]) -> tuple[dict[str, Any], Any, Any]:
        """Processor inputs for image + prompt + each value (one row per value), the targets and their mask."""
        torch = self._torch
        prompt = self._prompt_ids(question)
        n = len(options)
        enc = self.adapter.prefix_inputs(self, [image] * n, [self._prefix_text] * n, [prompt.qformer_text] * n)
        head = [int(i) for i in enc["input_ids"][0][: int(enc["attention_mask"][0].sum())]]
        seqs = [head + prompt.suffix + self._option_ids(o) for o in options]
        ids, mask = self._pad(seqs)
        enc = self._to_device(enc)
        for key in TEXT_KEYS[2:]:
            if key in enc:  # token-type ids of the image prefix, zeros for the text after it
                tt = torch.zeros_like(ids)
                tt[:, : enc[key].shape[1]] = enc[key]
                enc[key] = tt
        enc["input_ids"], enc["attention_mask"] = ids, mask
        target = torch.zeros_like(mask)
        start = len(head) + len(prompt.suffix)
        for i, o in enumerate(options):
            target[i, start : start + len(self._option_ids(o))] = 1
        return enc, ids, target

    def option_logprobs(self, items: Sequence[tuple[Any, str, Sequence[str]]], *, normalize: bool = True) -> list[Any]:
        """See the module docstring: differentiable per-value log-likelihoods, one full forward per row."""
        out = []
        for image, question, options in items:
            enc, ids, target = self.full_inputs(image, question, options)
            logits = self.model(**enc, return_dict=True).logits
            lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            tmask = target[:, 1:].to(lp.dtype)
            total = (lp * tmask).sum(-1)
            if self.reduce == "mean":
                total = total / tmask.sum(-1).clamp(min=1)
            out.append(total.log_softmax(-1) if normalize else total)
        return out

    # -- other uses ----------------------------------------------------------------------------------
    def generate_answer(self, image: Any, question: str, max_new_tokens: int = 8) -> str:
        """Free-text answer by ``generate`` (the slow baseline; answers need mapping onto options)."""
        torch = self._torch
        enc = self.adapter.prefix_inputs(self, [image], [self.prompt(question)], [self.prompt(question)])
        enc = self._to_device(enc)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, enc["input_ids"].shape[1] :] if out.shape[1] > enc["input_ids"].shape[1] else out[0]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def vision_embedding(self, image: Any) -> np.ndarray:
        """Mean last hidden state of the language model over the image prefix (features for learned heads)."""
        torch = self._torch
        question = self.prompt("Describe the person.")
        enc = self._to_device(self.adapter.prefix_inputs(self, [image], [self._prefix_text], [question]))
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=True, return_dict=True, logits_to_keep=1)
            hidden = self.adapter.hidden_of(out)[-1][0]
        return hidden.float().mean(dim=0).cpu().numpy()


def option_logprobs(
    scorer: OptionScorer, items: Sequence[tuple[Any, str, Sequence[str]]], *, normalize: bool = True
) -> list[Any]:
    """Differentiable per-value log-likelihoods (non-cached full forwards); see the module docstring."""
    return scorer.option_logprobs(items, normalize=normalize)


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

    def _predictions(self, scores: Sequence[np.ndarray], categories: Sequence[Category]) -> list[Prediction]:
        out = []
        for cat, s in zip(categories, scores, strict=True):
            dist = dict(zip(cat.options, softmax(s).tolist(), strict=True))
            out.append(Prediction.from_distribution(cat, dist, self.model_version))
        return out

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        if not categories:
            return []
        image = crop_person(ctx.image, ctx.person.box)
        return self._predictions(self.scorer.score(image, [(c.question, c.options) for c in categories]), categories)

    def label_many(self, ctxs: Sequence[PersonContext], categories: Sequence[Category]) -> list[list[Prediction]]:
        """Several persons in one batched pass (same categories for all)."""
        if not categories:
            return [[] for _ in ctxs]
        crops = [crop_person(c.image, c.person.box) for c in ctxs]
        scores = self.scorer.score_many(crops, [(c.question, c.options) for c in categories])
        return [self._predictions(s, categories) for s in scores]

    def embed(self, ctx: PersonContext) -> np.ndarray:
        return self.scorer.vision_embedding(crop_person(ctx.image, ctx.person.box))
