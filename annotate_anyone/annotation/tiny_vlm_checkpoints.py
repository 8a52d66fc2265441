"""Tiny randomly initialised image-text-to-text checkpoints of four VLM families, built from configs.

``build_tiny_vlm(family, out_dir)`` writes a folder that ``AutoProcessor.from_pretrained`` and
``AutoModelForImageTextToText.from_pretrained`` load offline: config, random weights, a byte-level BPE
tokenizer trained locally on the taxonomy's questions and values (with the family's special tokens) and
the family's processor with a chat template in the family's own format. Families: ``qwen2_5_vl``,
``qwen2_vl``, ``llava``, ``idefics3`` (SmolVLM's architecture), ``blip2``, ``instructblip``. The weights are random, so
outputs are well formed but meaningless. Folders go to a temp dir or ``Settings.model_cache_dir``; never
into the repository.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from annotate_anyone.annotation.taxonomy import Taxonomy, load_taxonomy
from annotate_anyone.annotation.tiny_checkpoints import _corpus, build_tiny_blip2, train_tokenizer

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IDEFICS3_SPECIALS = ["<|im_start|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]
FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava", "idefics3", "blip2", "instructblip")


def _tokenizer(out: Path, taxonomy: Taxonomy, specials: list[str], *, vocab_size: int = 700) -> Any:
    """Byte-level BPE trained on the taxonomy text, the family's special tokens added as special tokens."""
    corpus = _corpus(taxonomy) + ["User: Assistant: USER: ASSISTANT: system user assistant\n"]
    return train_tokenizer(out, corpus, vocab_size=vocab_size, specials=["[PAD]", "[UNK]", "<s>", "</s>", *specials],
                           extra_special_tokens=specials)  # fmt: skip


def _text(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """A 2-layer text decoder config (Qwen2/Llama style keys)."""
    cfg = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
    }
    cfg.update(extra)
    return cfg


def _qwen(out: Path, taxonomy: Taxonomy, version: str) -> tuple[Any, Any]:
    import transformers as tf

    tokenizer = _tokenizer(out, taxonomy, QWEN_SPECIALS)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    vision: dict[str, Any] = {"depth": 2, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2}
    vision.update(temporal_patch_size=2, in_chans=3)
    text = _text(tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]})
    if version == "2.5":
        vision.update(hidden_size=32, intermediate_size=64, out_hidden_size=32, window_size=56)
        vision.update(fullatt_block_indexes=[1])
        config_cls, model_cls = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
    else:
        vision.update(embed_dim=32, hidden_size=32, mlp_ratio=2)
        config_cls, model_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    image_processor = tf.Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    # Without torchvision the processor class refuses a missing video processor; save its parts instead.
    image_processor.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    return model_cls(config), None


def _llava(out: Path, taxonomy: Taxonomy) -> tuple[Any, Any]:
    import transformers as tf

    tokenizer = _tokenizer(out, taxonomy, ["<image>"])
    vision = tf.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = tf.LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=tf.LlamaConfig(**_text(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    image_processor = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = tf.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return tf.LlavaForConditionalGeneration(config), processor


def _idefics3(out: Path, taxonomy: Taxonomy) -> tuple[Any, Any]:
    """Idefics3, the architecture of SmolVLM-256M/500M/2.2B (their checkpoints are ``model_type: idefics3``)."""
    import transformers as tf

    tokenizer = _tokenizer(out, taxonomy, IDEFICS3_SPECIALS)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision.update(image_size=32, patch_size=8)
    config = tf.Idefics3Config(
        vision_config=vision,
        text_config=_text(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    image_seq_len = (32 // 8) ** 2 // 4
    kwargs: dict[str, Any] = {"do_image_splitting": False, "size": {"longest_edge": 32}}
    kwargs["max_image_size"] = {"longest_edge": 32}
    image_processor = tf.Idefics3ImageProcessorPil(**kwargs)
    processor = tf.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=IDEFICS3_TEMPLATE,
    )
    return tf.Idefics3ForConditionalGeneration(config), processor


def _instructblip(out: Path, taxonomy: Taxonomy) -> tuple[Any, Any]:
    import transformers as tf

    tokenizer = _tokenizer(out, taxonomy, ["<image>"])
    qformer_tokenizer = _tokenizer(out / "qformer_tokenizer", taxonomy, [])
    n_query = 4
    config = tf.InstructBlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },  # fmt: skip
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "encoder_hidden_size": 32,
            "vocab_size": len(qformer_tokenizer),
            "pad_token_id": qformer_tokenizer.pad_token_id,
        },  # fmt: skip
        text_config=tf.LlamaConfig(**_text(tokenizer)).to_dict(),
        num_query_tokens=n_query,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    processor = tf.InstructBlipProcessor(
        image_processor=tf.BlipImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=n_query,
    )
    return tf.InstructBlipForConditionalGeneration(config), processor


def build_tiny_vlm(family: str, out_dir: str | Path, *, taxonomy: Taxonomy | None = None, seed: int = 0) -> Path:
    """Build and save a tiny random checkpoint of ``family`` (one of ``FAMILIES``) under ``out_dir``."""
    import torch

    out = Path(out_dir)
    taxonomy = taxonomy or load_taxonomy()
    if family == "blip2":
        return build_tiny_blip2(out, taxonomy=taxonomy, seed=seed)
    builders: dict[str, Callable[[], tuple[Any, Any]]] = {
        "qwen2_5_vl": lambda: _qwen(out, taxonomy, "2.5"),
        "qwen2_vl": lambda: _qwen(out, taxonomy, "2"),
        "llava": lambda: _llava(out, taxonomy),
        "idefics3": lambda: _idefics3(out, taxonomy),
        "instructblip": lambda: _instructblip(out, taxonomy),
    }
    if family not in builders:
        raise ValueError(f"unknown tiny VLM family {family!r}; one of {', '.join(FAMILIES)}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, processor = builders[family]()
    model.eval().save_pretrained(str(out))
    if processor is not None:
        processor.save_pretrained(str(out))
    return out


def cached_tiny_vlm(family: str, cache_dir: str | Path) -> Path:
    """The tiny checkpoint of ``family`` under ``<cache_dir>/tiny-vlm/<family>`` (``cache_dir``: the model cache,
    ``Settings.model_cache_dir``), built there at first use."""
    import shutil
    import tempfile

    out = Path(cache_dir) / "tiny-vlm" / family
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=out.parent))
    build_tiny_vlm(family, tmp)
    try:
        tmp.rename(out)  # atomic: a concurrent builder's folder wins, ours is dropped
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
