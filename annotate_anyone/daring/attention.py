"""Cross-attention capture at the (H/16)x(W/16) level: a diffusers ``AttnProcessor2_0`` drop-in.

The processor computes every attention with fused SDPA exactly as the stock processor does, so
the UNet's output is unchanged. Only at cross-attention layers whose query length equals the
armed map size does it also compute ``softmax(QK^T / sqrt(d))`` (a small ``(B, heads, HW, 77)``
tensor) and, while recording, hand it to its :class:`AttentionStore`. No module is added.

Gradient checkpointing (non-reentrant) recomputes the forward during backward: the processor
then takes the same path but does not record, so saved tensors match and nothing is recorded twice.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from annotate_anyone.errors import InvalidInput

if TYPE_CHECKING:
    import torch


class AttentionStore:
    """Holds the attention probabilities recorded during one UNet forward.

    ``arm(map_hw)`` selects the layers (query length ``h*w``) and starts recording; ``collect()``
    returns the maps and stops recording; ``disarm()`` (after backward) switches capture off.
    """

    def __init__(self) -> None:
        self.map_hw: tuple[int, int] | None = None
        self.recording = False
        self.maps: list[torch.Tensor] = []

    @staticmethod
    def map_size(image_hw: tuple[int, int], factor: int = 16) -> tuple[int, int]:
        """Map size for an image size: ``(ceil(H/factor), ceil(W/factor))``."""
        return math.ceil(image_hw[0] / factor), math.ceil(image_hw[1] / factor)

    @property
    def target_len(self) -> int | None:
        return None if self.map_hw is None else self.map_hw[0] * self.map_hw[1]

    def arm(self, map_hw: tuple[int, int]) -> None:
        self.map_hw, self.recording, self.maps = tuple(map_hw), True, []

    def collect(self) -> list[torch.Tensor]:
        maps, self.maps, self.recording = self.maps, [], False
        return maps

    def disarm(self) -> None:
        self.map_hw, self.recording, self.maps = None, False, []

    def record(self, probs: torch.Tensor) -> None:
        if self.recording:
            self.maps.append(probs)


class CapturingAttnProcessor:
    """``AttnProcessor2_0`` that also records cross-attention probabilities for an :class:`AttentionStore`."""

    def __init__(self, store: AttentionStore) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.store = store
        self._stock = AttnProcessor2_0()

    def _captures(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> bool:
        target = self.store.target_len
        if target is None or encoder_hidden_states is None:
            return False
        length = hidden_states.shape[1] if hidden_states.ndim == 3 else math.prod(hidden_states.shape[2:])
        return length == target

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if not self._captures(hidden_states, encoder_hidden_states):
            return self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._capture_call(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def _capture_call(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
    ) -> torch.Tensor:
        """The stock ``AttnProcessor2_0`` computation, step for step, plus the recorded probabilities."""
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        scores = query @ key.transpose(-1, -2) * (head_dim**-0.5)
        if attention_mask is not None:
            scores = scores + attention_mask
        self.store.record(scores.softmax(dim=-1))

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def install_capture(unet: Any, processor: Any) -> dict[str, Any]:
    """Set ``processor`` (an object, e.g. :class:`CapturingAttnProcessor`) on every attention layer.

    Returns the previous processors, for ``unet.set_attn_processor(previous)``.
    """
    previous = dict(unet.attn_processors)
    if not previous:
        raise InvalidInput("the UNet has no attention layers")
    unet.set_attn_processor(processor)
    return previous


def capture_layer_names(unet: Any, image_hw: tuple[int, int], vae_factor: int = 8, factor: int = 16) -> list[str]:
    """Names of the cross-attention processors that see the ``image_hw / factor`` map (for reports)."""
    import torch

    store = AttentionStore()
    hits: list[str] = []

    class _Probe:
        def __init__(self, name: str) -> None:
            self.name, self.inner = name, CapturingAttnProcessor(store)

        def __call__(
            self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, *a: Any, **k: Any
        ):
            if self.inner._captures(hidden_states, encoder_hidden_states):
                hits.append(self.name)
            return self.inner(attn, hidden_states, encoder_hidden_states, *a, **k)

    previous = install_capture(unet, {name: _Probe(name) for name in unet.attn_processors})
    try:
        store.arm(AttentionStore.map_size(image_hw, factor))
        latent = (image_hw[0] // vae_factor, image_hw[1] // vae_factor)
        cfg = unet.config
        sample = torch.zeros(1, cfg.in_channels, *latent, dtype=unet.dtype, device=unet.device)
        ctx = torch.zeros(1, 77, cfg.cross_attention_dim, dtype=unet.dtype, device=unet.device)
        added = None
        if cfg.addition_embed_type == "text_time":
            pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            added = {
                "text_embeds": torch.zeros(1, pooled_dim, dtype=unet.dtype, device=unet.device),
                "time_ids": torch.zeros(1, 6, dtype=unet.dtype, device=unet.device),
            }
        with torch.no_grad():
            unet(sample, 1, encoder_hidden_states=ctx, added_cond_kwargs=added)
    finally:
        store.disarm()
        unet.set_attn_processor(previous)
    return hits
