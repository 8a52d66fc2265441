"""Per-group target masks from a parsing map (ATR ids) and a sample's ``aa_ids``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np

from annotate_anyone.daring.training_captions import NUM_GROUPS

if TYPE_CHECKING:
    import torch

NUM_PARSING_LABELS = 19  # 18 ATR labels + channel 18, never set (the "empty" mask)
BODY_SHAPE_GROUP = 1
SHOT_SLOT = NUM_GROUPS  # mask slot of the shot-type phrase
NUM_SLOTS = NUM_GROUPS + 1


ATR_MIRROR = np.arange(256, dtype=np.uint8)  # id -> id of the mirrored image (left <-> right)
for _left, _right in ((9, 10), (12, 13), (14, 15)):  # shoes, legs, arms
    ATR_MIRROR[_left], ATR_MIRROR[_right] = _right, _left


def mirror_labels(parsing: np.ndarray) -> np.ndarray:
    """A parsing map flipped left-right, with left/right ATR ids swapped (the person's left arm of the
    mirrored image is the original right arm)."""
    return ATR_MIRROR[np.asarray(parsing, dtype=np.uint8)[:, ::-1]]


def label_maps(parsing: np.ndarray, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """One map per ATR label, bilinearly resized to ``size`` ``(h, w)``: float ``(19, h, w)``.

    Bilinear resizing is linear, so the resized union of disjoint labels is the sum of their maps.
    ``antialias`` widens the bilinear kernel to the downscale factor; without it a 16x reduction
    samples only a few pixels per cell and small parts (face, shoes) can vanish from the map.
    """
    import torch
    import torch.nn.functional as F

    labels = torch.from_numpy(np.array(parsing, dtype=np.uint8, copy=True))
    out = torch.zeros(NUM_PARSING_LABELS, *size)
    for label in np.unique(parsing).tolist():
        if label >= NUM_PARSING_LABELS:
            continue
        onehot = (labels == label).float()[None, None]
        out[label] = F.interpolate(onehot, size=size, mode="bilinear", align_corners=False, antialias=antialias)[0, 0]
    return out


def group_masks(
    maps: torch.Tensor, aa_ids: Sequence[Sequence[int] | None] | None, kept: Collection[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks ``(21, h, w)`` (slots 0-19 groups, 20 the shot phrase) and a bool ``(21,)`` of usable slots.

    A kept group's mask is the union of its ids; body shape and the shot phrase use the foreground;
    groups not in ``kept`` (absent or dropped) get an empty mask and are not usable.
    """
    import torch

    foreground = (1.0 - maps[0]).clamp(0, 1)
    masks = torch.zeros(NUM_SLOTS, *maps.shape[1:])
    usable = torch.zeros(NUM_SLOTS, dtype=torch.bool)
    masks[SHOT_SLOT], usable[SHOT_SLOT] = foreground, True
    ids_per_group = list(aa_ids or [None] * NUM_GROUPS)
    for group in kept:
        if group == BODY_SHAPE_GROUP:
            masks[group], usable[group] = foreground, True
            continue
        ids = ids_per_group[group] if group < len(ids_per_group) else None
        if ids is None:
            continue
        valid = sorted({int(i) for i in ids if 0 <= int(i) < NUM_PARSING_LABELS})
        if valid:
            masks[group] = maps[valid].sum(0).clamp(0, 1)
        usable[group] = True
    return masks, usable
