"""The noising side of a training step: latents, noise (with offset), timesteps and the target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class NoisedBatch:
    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def encode_latents(vae: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample VAE latents (scaled) for pixels in [-1, 1], with a CPU generator for reproducibility."""
    import torch

    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        eps = torch.randn(dist.mean.shape, generator=generator).to(dist.mean.device, dist.mean.dtype)
        latents = dist.mean + dist.std * eps
    return latents * vae.config.scaling_factor


def noise_batch(
    scheduler: Any,
    latents: torch.Tensor,
    generator: torch.Generator,
    *,
    noise_offset: float = 0.0,
    timesteps: torch.Tensor | None = None,
) -> NoisedBatch:
    """Noise ``latents`` at random (or given) timesteps; the target follows the scheduler's prediction type."""
    import torch

    b, c = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((b, c, 1, 1), generator=generator)
    noise = noise.to(latents.device, latents.dtype)
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator)
    timesteps = timesteps.to(latents.device).long()
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return NoisedBatch(noisy=noisy, timesteps=timesteps, target=target)
