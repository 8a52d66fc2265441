"""One training step's losses: noise-prediction MSE plus lambda * HOLA on captured attention."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annotate_anyone.daring.attention import AttentionStore
from annotate_anyone.daring.components import TextConditioner
from annotate_anyone.daring.diffusion import encode_latents, noise_batch
from annotate_anyone.daring.hola import HolaTerms, hola_loss

if TYPE_CHECKING:
    import torch


class HolaObjective:
    """The HOLA term with its weight (lambda, default 1)."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, maps: list[torch.Tensor], masks: torch.Tensor, spans: list[list[tuple[int, int, int]]]):  # noqa: ANN204
        return hola_loss(maps, masks, spans)


@dataclass
class StepLosses:
    loss: torch.Tensor
    noise: torch.Tensor
    hola: torch.Tensor | None
    hola_samples: int


class DiffusionStep:
    """Computes the losses of a batch; HOLA runs only when an objective is given and a sample has spans."""

    def __init__(
        self,
        *,
        vae: Any,
        scheduler: Any,
        conditioner: TextConditioner,
        store: AttentionStore | None,
        objective: HolaObjective | None,
        noise_offset: float = 0.0,
        map_factor: int = 16,
    ) -> None:
        self.vae, self.scheduler, self.conditioner = vae, scheduler, conditioner
        self.store, self.objective = store, objective
        self.noise_offset, self.map_factor = noise_offset, map_factor

    def losses(
        self,
        unet: Any,
        batch: dict[str, Any],
        generator: torch.Generator,
        *,
        device: torch.device,
        autocast: Any = None,
    ) -> StepLosses:
        """Forward pass and losses; call :meth:`release` after backward."""
        import torch.nn.functional as F

        pixels = batch["pixel_values"]
        latents = encode_latents(self.vae, pixels.to(device), generator)
        noised = noise_batch(self.scheduler, latents, generator, noise_offset=self.noise_offset)
        cond = self.conditioner.encode(
            batch["captions"],
            device,
            original_size=batch["original_size"],
            crop_top_left=batch["crop_top_left"],
            target_size=tuple(pixels.shape[-2:]),
        )
        use_hola = self.objective is not None and self.store is not None and any(batch["spans"])
        if use_hola:
            self.store.arm(tuple(batch["masks"].shape[-2:]))
        with autocast or nullcontext():
            pred = unet(noised.noisy, noised.timesteps, **cond).sample
        noise_loss = F.mse_loss(pred.float(), noised.target.float())
        if not use_hola:
            return StepLosses(loss=noise_loss, noise=noise_loss, hola=None, hola_samples=0)
        terms: HolaTerms = self.objective(self.store.collect(), batch["masks"].to(device), batch["spans"])
        loss = noise_loss + self.objective.weight * terms.loss.to(noise_loss.dtype)
        return StepLosses(loss=loss, noise=noise_loss, hola=terms.loss, hola_samples=terms.samples)

    def release(self) -> None:
        """Switch capture off (after backward, so checkpoint recomputation takes the same path)."""
        if self.store is not None:
            self.store.disarm()

    @staticmethod
    def generator(seed: int, step: int, micro: int) -> torch.Generator:
        """The CPU generator of one micro-batch: a pure function of (seed, step, micro) for exact resume."""
        import torch

        return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + micro)
