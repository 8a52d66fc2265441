"""Tiny randomly initialised CLIP and SigLIP checkpoints built from configs, for tests and benchmarks.

Same rules as :mod:`annotate_anyone.annotation.tiny_checkpoints`: the tokenizer is trained locally on the
taxonomy's prompts with ``tokenizers``, nothing is downloaded, the weights are random (the outputs are
well-formed distributions, meaningless as answers). The folders load with ``AutoModel`` and
``AutoProcessor`` exactly like a real ``openai/clip-*`` or ``google/siglip-*`` checkpoint folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from annotate_anyone.annotation.taxonomy import Taxonomy, load_taxonomy
from annotate_anyone.annotation.tiny_checkpoints import train_tokenizer

MAX_TEXT = 64  # text positions of the tiny models (prompts are padded/truncated to this)


def _corpus(taxonomy: Taxonomy) -> list[str]:
    from annotate_anyone.annotation.labelers.clip import prompt_texts

    lines: list[str] = []
    for cat in taxonomy.categories():
        for texts in prompt_texts(taxonomy, cat).values():
            lines.extend(texts)
    return lines


def train_clip_tokenizer(out_dir: str | Path, sentences: Iterable[str], *, vocab_size: int = 800) -> object:
    """The project's locally trained BPE tokenizer
    (:func:`~annotate_anyone.annotation.tiny_checkpoints.train_tokenizer`), wrapping every text as
    ``<s> ... </s>`` (CLIP pools at ``</s>``) and limited to :data:`MAX_TEXT` tokens."""
    from tokenizers import processors

    fast = train_tokenizer(out_dir, sentences, vocab_size=vocab_size)
    bos, eos = fast.convert_tokens_to_ids("<s>"), fast.convert_tokens_to_ids("</s>")
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    fast.model_max_length = MAX_TEXT
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_clip(
    out_dir: str | Path,
    *,
    family: Literal["clip", "siglip"] = "clip",
    taxonomy: Taxonomy | None = None,
    seed: int = 0,
    image_size: int = 32,
) -> Path:
    """A tiny CLIP (``family="clip"``) or SigLIP (``"siglip"``) with its processor, saved to ``out_dir``."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_clip_tokenizer(out, _corpus(taxonomy or load_taxonomy()))
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_TEXT,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
    }
    torch.manual_seed(seed)
    if family == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        model = CLIPModel(config).eval()
        size = {"shortest_edge": image_size}
        crop = {"height": image_size, "width": image_size}
        processor = CLIPProcessor(image_processor=CLIPImageProcessor(size=size, crop_size=crop), tokenizer=tokenizer)
    elif family == "siglip":
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

        config = SiglipConfig(text_config=text, vision_config=vision)
        model = SiglipModel(config).eval()
        image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
        processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        raise ValueError(f"unknown CLIP family {family!r} (clip or siglip)")
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out
