"""Loading SD1.5 / SDXL components from a local diffusers folder, and turning captions into UNet conditions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from annotate_anyone.errors import MissingExtra, NotFound

if TYPE_CHECKING:
    import torch


def require_ml(what: str) -> None:
    """Fail early, naming the extra, when the ML stack is missing."""
    for package in ("torch", "diffusers", "transformers", "accelerate"):
        try:
            __import__(package)
        except ImportError as exc:
            raise MissingExtra(what, "ml", package) from exc


@dataclass
class Components:
    """The frozen parts (VAE, text side, noise scheduler) and the trained UNet."""

    kind: Literal["sd15", "sdxl"]
    unet: Any
    vae: Any
    scheduler: Any
    tokenizers: list[Any]
    text_encoders: list[Any]


def load_components(kind: Literal["sd15", "sdxl"], path: Path) -> Components:
    """Load UNet, VAE, tokenizer(s), text encoder(s) and a DDPM scheduler from ``path``."""
    require_ml("the Daring trainer")
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    path = Path(path)
    if not (path / "unet").is_dir():
        raise NotFound(f"{path} is not a diffusers model folder (no unet/)")
    tokenizers = [AutoTokenizer.from_pretrained(path / "tokenizer")]
    encoders = [CLIPTextModel.from_pretrained(path / "text_encoder")]
    if kind == "sdxl":
        tokenizers.append(AutoTokenizer.from_pretrained(path / "tokenizer_2"))
        encoders.append(CLIPTextModelWithProjection.from_pretrained(path / "text_encoder_2"))
    for encoder in encoders:
        encoder.requires_grad_(False).eval()
    vae = AutoencoderKL.from_pretrained(path / "vae").requires_grad_(False).eval()
    return Components(
        kind=kind,
        unet=UNet2DConditionModel.from_pretrained(path / "unet"),
        vae=vae,
        scheduler=DDPMScheduler.from_pretrained(path / "scheduler"),
        tokenizers=tokenizers,
        text_encoders=encoders,
    )


class TextConditioner:
    """Captions -> ``encoder_hidden_states`` (and SDXL's ``added_cond_kwargs``) for the UNet."""

    def __init__(self, components: Components, max_tokens: int = 77) -> None:
        self.c, self.max_tokens = components, max_tokens

    def _ids(self, tokenizer: Any, captions: list[str], device: torch.device) -> torch.Tensor:
        enc = tokenizer(
            captions, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        return enc.input_ids.to(device)

    def encode(
        self,
        captions: list[str],
        device: torch.device,
        *,
        original_size: torch.Tensor | None = None,
        crop_top_left: torch.Tensor | None = None,
        target_size: tuple[int, int] | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Any]:
        """UNet keyword arguments for ``captions``; SDXL also needs sizes (``(B, 2)`` tensors, target h, w)."""
        import torch

        with torch.no_grad():
            if self.c.kind == "sd15":
                tok, enc = self.c.tokenizers[0], self.c.text_encoders[0]
                hidden = enc(self._ids(tok, captions, device))[0]
                return {"encoder_hidden_states": hidden.to(dtype or hidden.dtype)}
            states, pooled = [], None
            for tok, enc in zip(self.c.tokenizers, self.c.text_encoders, strict=True):
                out = enc(self._ids(tok, captions, device), output_hidden_states=True)
                states.append(out.hidden_states[-2])
                pooled = out[0] if out[0].ndim == 2 else pooled
            hidden = torch.cat(states, dim=-1)
        n = len(captions)
        if original_size is None or crop_top_left is None or target_size is None:
            raise ValueError("SDXL conditioning needs original_size, crop_top_left and target_size")
        target = torch.tensor([list(target_size)] * n)
        time_ids = torch.cat([original_size, crop_top_left, target], dim=1).to(device, dtype or hidden.dtype)
        dtype = dtype or hidden.dtype
        return {
            "encoder_hidden_states": hidden.to(dtype),
            "added_cond_kwargs": {"text_embeds": pooled.to(dtype), "time_ids": time_ids},
        }
