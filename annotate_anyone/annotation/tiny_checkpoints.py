"""Tiny randomly initialised checkpoints (Segformer, BLIP-2) built from configs, for tests and benchmarks.

Everything is local: tokenizers are trained on a few sentences with ``tokenizers`` (``train_tokenizer``,
which the sibling modules share); nothing is downloaded. The weights are random, so the outputs are well
formed but meaningless. The other label-model families: :mod:`~annotate_anyone.annotation.tiny_vlm_checkpoints`
(VLMs) and :mod:`~annotate_anyone.annotation.tiny_clip_checkpoints` (CLIP, SigLIP); the Daring trainer's
tiny diffusers pipelines: :mod:`~annotate_anyone.daring.tiny_pipelines`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from annotate_anyone.annotation.taxonomy import ATR_LABELS, Taxonomy, load_taxonomy

SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>", "<image>"]


def _corpus(taxonomy: Taxonomy) -> list[str]:
    lines = ["Question: Answer: USER: ASSISTANT: a photo of a person ."]
    for attr in taxonomy.attributes():
        lines.append(attr.question)
        lines.append(" ".join(attr.values))
    return lines


def train_tokenizer(
    out_dir: str | Path,
    sentences: Iterable[str],
    *,
    vocab_size: int = 600,
    specials: Sequence[str] = SPECIALS,
    extra_special_tokens: Sequence[str] = (),
) -> object:
    """A byte-level BPE tokenizer trained on ``sentences``, wrapped and saved as ``PreTrainedTokenizerFast``.

    ``specials`` get the first ids; ``extra_special_tokens`` (a VLM family's image and chat markers) are also
    declared as special on the wrapper, so they are never split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(sentences), trainer=trainer)
    extra = {"extra_special_tokens": list(extra_special_tokens)} if extra_special_tokens else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="<s>",
        eos_token="</s>",
        **extra,
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_blip2(out_dir: str | Path, *, taxonomy: Taxonomy | None = None, seed: int = 0) -> Path:
    """A ~1M-parameter BLIP-2 (ViT + Q-Former + OPT) with its processor, saved to ``out_dir``."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
    )
    from transformers.models.blip_2.configuration_blip_2 import Blip2QFormerConfig, Blip2VisionConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out, _corpus(taxonomy or load_taxonomy()))
    n_query = 4
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ).to_dict(),
        qformer_config=Blip2QFormerConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            encoder_hidden_size=32,
            vocab_size=len(tokenizer),
        ).to_dict(),
        text_config=OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ).to_dict(),
        num_query_tokens=n_query,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        num_query_tokens=n_query,
    )
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def build_tiny_segformer(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny Segformer with the 18 ATR labels and its image processor, saved to ``out_dir``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = SegformerConfig(
        num_labels=len(ATR_LABELS),
        id2label=dict(enumerate(ATR_LABELS)),
        label2id={n: i for i, n in enumerate(ATR_LABELS)},
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=32,
    )
    torch.manual_seed(seed)
    SegformerForSemanticSegmentation(config).eval().save_pretrained(str(out))
    SegformerImageProcessor(size={"height": 64, "width": 64}, do_reduce_labels=False).save_pretrained(str(out))
    return out
