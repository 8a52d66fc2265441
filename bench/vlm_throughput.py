"""Persons per second for all 69 attribute questions at full model size: cached option scoring (batched over
persons) against one ``generate`` per question, and the GPU-hours each implies for 6M persons.

The model is the real architecture built from the published config values written below, with random
weights (throughput does not depend on the weights; nothing is downloaded). The tokenizer is trained
locally on the taxonomy text with the family's special tokens, so prompts are shorter than with the real
tokenizer (our questions are ~10-20 tokens either way); image-token counts come from the family's image
processor with its published settings, so the vision side and the image prefix are full size.

    python bench/vlm_throughput.py --config smolvlm-256m                       # CPU, fp32
    python bench/vlm_throughput.py --config qwen2.5-vl-3b --device cuda        # bf16 on CUDA
    python bench/vlm_throughput.py --config tiny --persons 4

Persons are crops of the astronaut photo (same size, shifted boxes). Batched: ``score_many`` over
``--persons`` crops. Naive: ``generate`` (greedy, ``--new-tokens``) for each of the 69 questions of
``--naive-persons`` crops. Prints a table and, last, ``ratio X`` (naive seconds per person / batched).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

# Published configs (values of the public config.json files; our transcription).
CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-3b": {
        "family": "qwen2_5_vl",
        "text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
                 "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 128000,
                 "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}},
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                   "window_size": 112,
                   "fullatt_block_indexes": [7, 15, 23, 31], "in_chans": 3, "hidden_act": "silu"},
        "image": {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2,
                  "temporal_patch_size": 2},
    },
    "llava-1.5-7b": {
        "family": "llava",
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                 "tie_word_embeddings": False},
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"},
        "image": {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}},
    },
    "smolvlm-256m": {
        "family": "idefics3",
        "text": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                 "num_key_value_heads": 3, "vocab_size": 49280, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                 "rope_theta": 100000.0, "tie_word_embeddings": True},
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "image_size": 512, "patch_size": 16},
        "image": {"do_image_splitting": True, "size": {"longest_edge": 2048}, "max_image_size": {"longest_edge": 512}},
        "scale_factor": 4,
        "image_seq_len": 64,
    },
}  # fmt: skip


def build(name: str, device: str, dtype: Any) -> tuple[Any, Any]:
    """The model (random weights, on ``device`` in ``dtype``) and a processor for config ``name``."""
    import torch
    import transformers as tf

    from annotate_anyone.annotation import tiny_vlm_checkpoints as vt
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.annotation.vlm_adapters import qwen_processor_without_video

    spec = CONFIGS[name]
    tmp = tempfile.mkdtemp(prefix="aa-vlm-tok-")
    tax = load_taxonomy()
    family = spec["family"]
    specials = {"qwen2_5_vl": vt.QWEN_SPECIALS, "llava": ["<image>"], "idefics3": vt.IDEFICS3_SPECIALS}[family]
    tok = vt._tokenizer(vt.Path(tmp), tax, specials)
    text = {**spec["text"], "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}  # fmt: skip
    if family == "qwen2_5_vl":
        ids = {t: tok.convert_tokens_to_ids(t) for t in vt.QWEN_SPECIALS}
        config = tf.Qwen2_5_VLConfig(
            text_config=text, vision_config=spec["vision"], image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )  # fmt: skip
        processor = qwen_processor_without_video(
            None, tok, tf.Qwen2VLImageProcessorPil(**spec["image"]), model_type="qwen2_5_vl",
            chat_template=vt.QWEN_TEMPLATE,
        )  # fmt: skip
        cls: Any = tf.Qwen2_5_VLForConditionalGeneration
    elif family == "llava":
        config = tf.LlavaConfig(
            vision_config=tf.CLIPVisionConfig(**spec["vision"]).to_dict(),
            text_config=tf.LlamaConfig(**text).to_dict(),
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
        processor = tf.LlavaProcessor(
            image_processor=tf.CLIPImageProcessorPil(**spec["image"]), tokenizer=tok, patch_size=14,
            vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=vt.LLAVA_TEMPLATE,
        )  # fmt: skip
        cls = tf.LlavaForConditionalGeneration
    else:
        config = tf.Idefics3Config(
            vision_config=spec["vision"], text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
            scale_factor=spec["scale_factor"],
        )  # fmt: skip
        processor = tf.Idefics3Processor(
            image_processor=tf.Idefics3ImageProcessorPil(**spec["image"]), tokenizer=tok,
            image_seq_len=spec["image_seq_len"], chat_template=vt.IDEFICS3_TEMPLATE,
        )  # fmt: skip
        cls = tf.Idefics3ForConditionalGeneration
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval(), processor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny", choices=["tiny", *CONFIGS])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--persons", type=int, default=4, help="crops scored together in the batched pass")
    ap.add_argument("--naive-persons", type=int, default=1, help="crops answered by generate, 69 calls each")
    ap.add_argument("--naive-questions", type=int, default=69, help="questions timed for generate (scaled to 69)")
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--max-batch", type=int, default=512)
    ap.add_argument("--cache-budget-gb", type=float, default=0, help="KV copies per chunk (0: scorer default)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--pool", type=float, default=6e6, help="persons in the pool, for the GPU-hours column")
    args = ap.parse_args()

    import torch
    from skimage.data import astronaut

    from annotate_anyone.annotation.labelers.vlm import OptionScorer, crop_person
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    t0 = time.perf_counter()
    if args.config == "tiny":
        scorer = OptionScorer(build_tiny_vlm("qwen2_5_vl", tempfile.mkdtemp(prefix="aa-vlm-")), device=args.device,
                              dtype="bfloat16" if cuda else "float32", max_batch=args.max_batch)  # fmt: skip
    else:
        model, processor = build(args.config, args.device, dtype)
        scorer = OptionScorer.from_parts(model, processor, model_version=f"random:{args.config}", device=args.device,
                                         max_batch=args.max_batch)  # fmt: skip
    build_s = time.perf_counter() - t0
    if args.cache_budget_gb:
        scorer.cache_budget = args.cache_budget_gb * 2**30
    photo = astronaut()
    crops = [crop_person(photo, (100 + 8 * i, 20 + 4 * i, 400 + 8 * i, 500 + 4 * i)) for i in range(args.persons)]
    questions = [(c.question, c.options) for c in load_taxonomy().categories()]
    n_params = sum(p.numel() for p in scorer.model.parameters())
    prefix_len = len(scorer.processor(images=[crops[0]], text=[scorer._prefix_text])["input_ids"][0])

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    scorer.score_many(crops[:1], questions)  # warm-up (prompt tokenization is cached per question)
    sync()
    t = time.perf_counter()
    scorer.score_many(crops, questions)
    sync()
    batched = (time.perf_counter() - t) / len(crops)
    t = time.perf_counter()
    asked = questions[: args.naive_questions]
    for crop in crops[: args.naive_persons]:
        for q, _ in asked:
            scorer.generate_answer(crop, q, args.new_tokens)
    sync()
    naive = (time.perf_counter() - t) / args.naive_persons * len(questions) / len(asked)
    scaled = "" if len(asked) == len(questions) else f", {len(asked)} of {len(questions)} questions timed, scaled"
    where = f"{args.device} {str(dtype).removeprefix('torch.')}"
    if cuda:
        where += f" ({torch.cuda.get_device_name()}, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB)"
    n_options = sum(len(o) for _, o in questions)
    print(f"{args.config}: {type(scorer.model).__name__}, {n_params / 1e6:.1f}M parameters (random), {where}; "
          f"crop {crops[0].size[0]}x{crops[0].size[1]} -> image prefix {prefix_len} tokens; "
          f"{len(questions)} questions, {n_options} options; built in {build_s:.0f} s")  # fmt: skip
    print(f"| method | persons | s/person | persons/s | device-hours for {args.pool:,.0f} persons |")
    print("|---|---|---|---|---|")
    for label, n, sec in (
        (f"cached option scoring, {args.persons} persons batched", args.persons, batched),
        (f"generate per question ({args.new_tokens} new tokens{scaled})", args.naive_persons, naive),
    ):
        print(f"| {label} | {n} | {sec:.3f} | {1 / sec:.3g} | {args.pool * sec / 3600:,.0f} |")
    print(f"ratio {naive / batched:.2f}")


if __name__ == "__main__":
    main()
