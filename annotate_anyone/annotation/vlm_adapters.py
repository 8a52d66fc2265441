"""Family quirks of image-text-to-text checkpoints, one small adapter per family.

The labeler (:mod:`annotate_anyone.annotation.labelers.vlm`) is family-agnostic; an adapter answers only
what differs: how to load the processor, how to encode the image prefix, where the text decoder and the
KV cache live, and at which position text continues after the image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from annotate_anyone.errors import ConfigError


def _cache(out: Any) -> Any:
    """The KV cache of a model output (``cache`` in transformers >= 5.2x, ``past_key_values`` before)."""
    keys = out.keys() if hasattr(out, "keys") else ()
    return out["cache"] if "cache" in keys else out.past_key_values


class VLMAdapter:
    """Defaults: the processor from ``AutoProcessor``, text after the image at position = token index."""

    family: ClassVar[str] = "generic"
    model_types: ClassVar[tuple[str, ...]] = ()
    question_conditioned_vision: ClassVar[bool] = False  # the vision side reads the question (InstructBLIP)

    def load_processor(self, path: Path) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(path))

    def prefix_text(self, head: str) -> str:
        """The prompt text that makes up the image prefix, given the text before the question."""
        return head

    def prefix_inputs(self, scorer: Any, images: list[Any], texts: list[str], questions: list[str]) -> Any:
        return scorer.processor(images=images, text=texts, return_tensors="pt", padding=True)

    def text_decoder(self, model: Any) -> Any:
        inner = model.model
        return getattr(inner, "language_model", None) or inner.text_model

    def cache_of(self, out: Any) -> Any:
        return _cache(out)

    def hidden_of(self, out: Any) -> Any:
        return out.hidden_states

    def text_position_offset(self, model: Any, enc: dict[str, Any], out: Any) -> Any:
        return None


class QwenVLAdapter(VLMAdapter):
    """Qwen2-VL / Qwen2.5-VL: multimodal RoPE, so text after the image continues at index + rope delta.

    Without torchvision, ``AutoProcessor`` cannot build their processors (it checks the video processor's
    class); the processor is then assembled from the tokenizer, the PIL image processor and the chat
    template saved in the folder, without a video processor.
    """

    family = "qwen2-vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")

    def load_processor(self, path: Path) -> Any:
        try:
            return super().load_processor(path)
        except (AttributeError, ImportError, TypeError, ValueError):
            return qwen_processor_without_video(path)

    def text_position_offset(self, model: Any, enc: dict[str, Any], out: Any) -> Any:
        deltas = getattr(out, "rope_deltas", None)
        if deltas is None:
            deltas = model.model.rope_deltas
        return deltas.reshape(-1).to(enc["input_ids"].device).long()


def qwen_processor_without_video(
    path: Path | None,
    tokenizer: Any = None,
    image_processor: Any = None,
    *,
    model_type: str | None = None,
    chat_template: str | None = None,
) -> Any:
    """A Qwen2(.5)-VL processor with ``video_processor=None``, built without the class checks of ``__init__``.

    From a folder (``path``), or from parts (``tokenizer``, ``image_processor``, ``model_type``, ``chat_template``).
    """
    import transformers as tf

    if model_type is None and path is not None and (Path(path) / "config.json").is_file():
        model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    cls = tf.Qwen2_5_VLProcessor if model_type == "qwen2_5_vl" else tf.Qwen2VLProcessor
    tokenizer = tokenizer or tf.AutoTokenizer.from_pretrained(str(path))
    image_processor = image_processor or tf.Qwen2VLImageProcessorPil.from_pretrained(str(path))
    template = chat_template
    for name in ("chat_template.jinja", "chat_template.json") if path is not None and template is None else ():
        f = Path(path) / name
        if f.is_file():
            text = f.read_text()
            template = json.loads(text)["chat_template"] if name.endswith(".json") else text
            break
    proc = cls.__new__(cls)
    proc.chat_template = template or getattr(tokenizer, "chat_template", None)
    proc.image_token, proc.video_token = "<|image_pad|>", "<|video_pad|>"
    proc.image_token_id = tokenizer.convert_tokens_to_ids(proc.image_token)
    proc.video_token_id = tokenizer.convert_tokens_to_ids(proc.video_token)
    proc.image_processor, proc.tokenizer, proc.video_processor = image_processor, tokenizer, None
    return proc


class LlavaAdapter(VLMAdapter):
    family = "llava"
    model_types = ("llava", "llava_next", "llava_onevision")


class Idefics3Adapter(VLMAdapter):
    """Idefics3 and SmolVLM (same layout: ``model.model.text_model``)."""

    family = "idefics3"
    model_types = ("idefics3", "smolvlm")


class Blip2Adapter(VLMAdapter):
    """BLIP-2: query tokens prepended by the processor; the language model is a whole causal LM."""

    family = "blip2"
    model_types = ("blip-2",)

    def text_decoder(self, model: Any) -> Any:
        lm = model.language_model
        return lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model

    def cache_of(self, out: Any) -> Any:
        return _cache(out.language_model_outputs)

    def hidden_of(self, out: Any) -> Any:
        return out.language_model_outputs.hidden_states


class InstructBlipAdapter(Blip2Adapter):
    """InstructBLIP: the Q-Former reads the question, so the image prefix is per (person, question)."""

    family = "instructblip"
    model_types = ("instructblip",)
    question_conditioned_vision = True

    def prefix_inputs(self, scorer: Any, images: list[Any], texts: list[str], questions: list[str]) -> Any:
        """Each distinct image processed once; the Q-Former reads each unit's question (its whole prompt)."""
        import torch

        slot: dict[int, int] = {}
        unique = [slot.setdefault(id(img), len(slot)) for img in images]
        firsts = list({id(img): img for img in images}.values())
        enc = scorer.processor(images=firsts, text=texts[: len(firsts)], return_tensors="pt", padding=True)
        idx = torch.tensor(unique)
        enc = {k: v[idx] for k, v in enc.items()}
        q = scorer.processor.qformer_tokenizer(questions, return_tensors="pt", padding=True)
        enc["qformer_input_ids"], enc["qformer_attention_mask"] = q["input_ids"], q["attention_mask"]
        return enc


ADAPTERS: tuple[type[VLMAdapter], ...] = (
    QwenVLAdapter,
    LlavaAdapter,
    Idefics3Adapter,
    Blip2Adapter,
    InstructBlipAdapter,
)


def adapter_for(path: str | Path) -> VLMAdapter:
    """The adapter for the checkpoint folder ``path`` (by ``model_type`` in its config.json)."""
    f = Path(path) / "config.json"
    try:
        model_type = json.loads(f.read_text()).get("model_type", "")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a transformers checkpoint folder (config.json unreadable: {exc})") from exc
    return adapter_for_model_type(model_type, where=str(path))


def adapter_for_model_type(model_type: str, *, where: str = "checkpoint") -> VLMAdapter:
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls()
    supported = ", ".join(t for cls in ADAPTERS for t in cls.model_types)
    raise ConfigError(f"{where}: model_type {model_type!r} is not a supported VLM family (supported: {supported})")
