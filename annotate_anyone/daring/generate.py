"""Text-to-image with a trained Daring checkpoint: the base pipeline with the checkpoint's UNet."""

from __future__ import annotations

from pathlib import Path

from annotate_anyone.daring.checkpoints import load_checkpoint_unet, read_meta
from annotate_anyone.daring.components import require_ml


def generate(
    checkpoint: Path,
    prompt: str,
    out: Path,
    *,
    negative_prompt: str | None = None,
    steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    use_ema: bool = True,
    device: str | None = None,
) -> Path:
    """Render ``prompt`` with the checkpoint's (EMA) UNet in its base model's pipeline; writes a PNG to ``out``."""
    require_ml("generation")
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    meta = read_meta(checkpoint)
    model = meta.config.model
    unet = load_checkpoint_unet(checkpoint, use_ema=use_ema)
    cls = StableDiffusionXLPipeline if model.kind == "sdxl" else StableDiffusionPipeline
    extra = {} if model.kind == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(model.path, unet=unet, **extra)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    image = pipe(
        prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=generator,
    ).images[0]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
