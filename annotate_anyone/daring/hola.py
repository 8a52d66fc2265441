"""HOLA (Human Body and Outfit Guided Loss for Alignment), normalised as CosmicMan's ``loss.py`` (brief, section 4).

For a sample, each usable group ``i`` with token span ``[s, e)`` of ``n_i`` tokens and mask ``h_i``
(resized to the map, ``P`` pixels), at every captured layer and head, the maps ``m_j`` of all span
tokens of all groups and one mean map per group form one set of entries, and ONE mean squared error
is taken over all of them::

    term = sum_i ( sum_{j in span i} ||m_j - h_i||^2 + ||mean_j m_j - h_i||^2 ) / (P * sum_i (n_i + 1))

The sample's loss is the mean of ``term`` over every (layer, head) pair; the batch loss is the mean
over samples that have at least one group (caption-dropped samples have none and are skipped).
(Dividing by the number of groups instead, as this module once did, weighs HOLA about mean(n_i + 1)
times more: 4-7x on real captions.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from annotate_anyone.errors import InvalidInput

if TYPE_CHECKING:
    import torch

Span = tuple[int, int, int]  # (mask slot, start token, end token)


@dataclass
class HolaTerms:
    """The batch loss, the per-sample losses and which samples took part."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    active: torch.Tensor

    @property
    def samples(self) -> int:
        return int(self.active.sum())


def span_matrix(
    spans: Sequence[Sequence[Span]], slots: int, tokens: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, tokens, slots)`` 0/1 membership of each token in each slot's span, and ``(B, slots)`` usage."""
    import torch

    member = torch.zeros(len(spans), tokens, slots, device=device)
    used = torch.zeros(len(spans), slots, dtype=torch.bool, device=device)
    for b, sample in enumerate(spans):
        for slot, start, end in sample:
            if not 0 <= start < end <= tokens:
                raise InvalidInput(f"span ({start}, {end}) is outside the {tokens} text tokens")
            member[b, start:end, slot] = 1.0
            used[b, slot] = True
    return member, used


def hola_loss(
    maps: Sequence[torch.Tensor],
    masks: torch.Tensor,
    spans: Sequence[Sequence[Span]],
    usable: torch.Tensor | None = None,
) -> HolaTerms:
    """HOLA over captured layers.

    ``maps``: per layer ``(B, heads, h*w, T)`` attention probabilities; ``masks``: ``(B, slots, h, w)``
    targets at the map size; ``spans``: per sample the ``(slot, start, end)`` spans to align;
    ``usable``: optional ``(B, slots)`` bool, slots whose mask may be used.
    """
    import torch

    if not maps:
        raise InvalidInput("no attention maps were captured: no cross-attention layer has the map size")
    batch, slots = masks.shape[:2]
    target = masks.flatten(2).transpose(1, 2).float()  # (B, P, S)
    tokens = maps[0].shape[-1]
    member, used = span_matrix(spans, slots, tokens, device=target.device)
    if usable is not None:
        used &= usable.to(used.device)
    member = member * used[:, None, :]
    counts = member.sum(1)  # (B, S) tokens per span
    weights = used.float()
    entries = ((counts + 1.0) * weights).sum(1).clamp(min=1)  # (B,) sum over groups of (n_i + 1)
    zero = target.new_zeros(())
    per_layer = []
    for layer in maps:
        if layer.shape[2] != target.shape[1]:
            raise InvalidInput(f"attention map has {layer.shape[2]} positions, masks have {target.shape[1]}")
        a = layer.float()  # (B, H, P, T)
        summed = torch.einsum("bhpt,bts->bhps", a, member)  # sum of the span's maps
        squares = torch.einsum("bhpt,bts->bhps", a * a, member)
        h = target[:, None]  # (B, 1, P, S)
        n = counts[:, None, None, :]
        per_token = (squares - 2 * h * summed + n * h * h).mean(2)  # sum_j MSE(m_j, h)
        mean_map = summed / n.clamp(min=1)
        of_mean = ((mean_map - h) ** 2).mean(2)
        summed_errors = ((per_token.clamp(min=0) + of_mean) * weights[:, None, :]).sum(2)  # (B, H)
        per_layer.append(summed_errors / entries[:, None])  # one MSE over all entries, per head
    stacked = torch.cat(per_layer, 1)  # (B, sum of heads): one value per (layer, head)
    active = weights.sum(1) > 0
    per_sample = stacked.mean(1)
    loss = per_sample[active].mean() if bool(active.any()) else zero + 0.0 * stacked.sum()
    return HolaTerms(loss=loss, per_sample=per_sample, active=active)
