"""Tiny randomly initialised SD1.5- and SDXL-shaped pipelines, saved in diffusers format (tests, benches).

Nothing is downloaded: the tokenizer is a BPE trained here on caption-like sentences and wrapped in
``PreTrainedTokenizerFast``; UNet, VAE and CLIP text encoders are built from small configs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from annotate_anyone.annotation.phrases import SHOT_PHRASE_STYLES

ModelKind = Literal["sd15", "sdxl"]

BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<|unk|>"

_CORPUS = [
    *(phrase for style in SHOT_PHRASE_STYLES.values() for phrase in style.values()),
    "a asian adult female, fit, street, black wavy long hair, short sleeve cotton solid t-shirt",
    "a caucasian elderly male, slim, indoor, blonde straight short hair, long sleeve silk floral dress",
    "a latino young female, curvy, studio, brown curly above shoulders hair, denim striped jeans coat",
    "leather belt, wool scarf, casual, formal, sporty, knitted headband, silk headscarf, lace veil",
    "cotton socks, striped ties, red blue green white yellow pink purple grey orange",
    "sweater, shirt, skirt, pants, shorts, boots, sneakers, sandals, hat, bag, sunglasses, jumpsuit",
    "a photo of a person standing outdoors, high quality, detailed",
]


def train_tokenizer(out_dir: Path, extra_text: Iterable[str] = ()) -> Path:
    """Train a small BPE tokenizer (lowercase, whitespace/punctuation split) and save it with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789-,.'")
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=1, special_tokens=[BOS, EOS, UNK], initial_alphabet=alphabet
    )
    tok.train_from_iterator([*_CORPUS, *extra_text], trainer=trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=EOS, model_max_length=77
    )
    wrapped.save_pretrained(out_dir)
    return out_dir


def _text_encoder(tokenizer, hidden: int, projection: bool, seed: int):  # noqa: ANN001, ANN202
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae(seed: int):  # noqa: ANN202
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),  # four levels: the usual 8x downsampling
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=128,
    )


def tiny_unet(kind: ModelKind, cross_dim: int, pooled_dim: int, seed: int, channels: tuple[int, ...]) -> Any:
    """A small random ``UNet2DConditionModel`` laid out like SD1.5 (``sd15``) or SDXL (``sdxl``)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    c0, c1, c2 = channels
    if kind == "sd15":
        # SD1.5 pattern: cross-attention at every level but the last; the H/16 level is the second.
        return UNet2DConditionModel(
            sample_size=16,
            block_out_channels=(c0, c1, c2),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            cross_attention_dim=cross_dim,
            attention_head_dim=2,
            norm_num_groups=8,
        )
    # SDXL pattern: no attention at the first level, 2 transformer layers at the H/16 level.
    return UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(c0, c1, c2),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        transformer_layers_per_block=(1, 2, 2),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        cross_attention_dim=cross_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + pooled_dim,
        norm_num_groups=8,
    )


def build_tiny_pipeline(
    out_dir: Path,
    kind: ModelKind = "sd15",
    *,
    seed: int = 0,
    channels: tuple[int, int, int] = (16, 32, 32),
    text_hidden: int = 32,
) -> Path:
    """Build and save a tiny random pipeline of ``kind`` under ``out_dir``; returns ``out_dir``."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(train_tokenizer(Path(tmp)))
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        clip_sample=False,
    )
    if kind == "sd15":
        te = _text_encoder(tokenizer, text_hidden, projection=False, seed=seed + 1)
        pipe = StableDiffusionPipeline(
            vae=_vae(seed + 2),
            text_encoder=te,
            tokenizer=tokenizer,
            unet=tiny_unet(kind, text_hidden, 0, seed + 3, channels),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        te1 = _text_encoder(tokenizer, text_hidden, projection=False, seed=seed + 1)
        te2 = _text_encoder(tokenizer, text_hidden, projection=True, seed=seed + 4)
        pipe = StableDiffusionXLPipeline(
            vae=_vae(seed + 2),
            text_encoder=te1,
            text_encoder_2=te2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=tiny_unet(kind, 2 * text_hidden, text_hidden, seed + 3, channels),
            scheduler=scheduler,
        )
    pipe.save_pretrained(out_dir)
    return out_dir
