"""Training data: a release's rows as bucketed, captioned samples.

The release is read through :func:`annotate_anyone.datasets.open_release`: a folder laid out by
``release materialize``, or a CosmicMan-HQ style parquet index with its data root, opens as a
:class:`~annotate_anyone.datasets.LocalRelease` (rows with ``aa_text`` in release spelling, images and
parsing maps by position). This module turns those rows into training samples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotate_anyone.annotation.phrases import shot_phrases
from annotate_anyone.daring.buckets import AspectBuckets
from annotate_anyone.daring.masks import SHOT_SLOT, group_masks, label_maps, mirror_labels
from annotate_anyone.daring.spans import caption_spans
from annotate_anyone.daring.training_captions import NUM_GROUPS, SHOT, compose_caption
from annotate_anyone.datasets import LocalRelease, open_release
from annotate_anyone.errors import InvalidInput


def open_training_release(index: Path, data_root: Path | None = None) -> LocalRelease:
    """The release a run trains on: :func:`~annotate_anyone.datasets.open_release` of a release laid out on disk
    (a store of published releases is refused: materialize one first)."""
    release = open_release(index, data_root=data_root)
    if not isinstance(release, LocalRelease):
        raise InvalidInput(
            f"{index} is a store of published releases; lay one out with `annotate-anyone release materialize` "
            "and train on that folder"
        )
    return release


@dataclass(frozen=True)
class CaptionRules:
    """Caption composition settings (brief defaults)."""

    max_tokens: int = 77
    group_dropout: float = 0.1
    optional_keep: float = 0.5
    caption_dropout: float = 0.1
    mask_antialias: bool = True
    hflip: float = 0.5  # probability of flipping image and masks (left/right ATR ids swapped)
    shot_phrases: str = "cosmicman"  # or "annotate-anyone"
    time_ids: str = "cosmicman"  # SDXL sizes: the bucket and crop (0, 0) ("cosmicman"), or "sdxl"


def fit_to_bucket(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Resize-to-cover size and centre-crop offset ``(top, left)`` for ``size`` ``(h, w)`` into ``bucket``."""
    h, w = size
    bh, bw = bucket
    scale = max(bh / h, bw / w)
    rh, rw = max(bh, round(h * scale)), max(bw, round(w * scale))
    return (rh, rw), ((rh - bh) // 2, (rw - bw) // 2)


class DaringDataset:
    """Turns rows into training samples; item keys are ``(index, epoch)`` so randomness is reproducible.

    A sample holds the bucket-sized image in [-1, 1], the composed caption, its spans as
    ``(slot, start, end)`` (slot 20 = shot phrase), masks ``(21, H/f, W/f)`` at the attention map
    size, and SDXL's original size and crop offsets (see ``CaptionRules.time_ids``). With
    probability ``hflip`` the image and the parsing map are mirrored; the map's left/right ids swap,
    so a left shoe stays a left shoe (CosmicMan's loader mirrors the group masks, which is the same
    for every group here: each takes both sides or neither).
    """

    def __init__(
        self,
        source: LocalRelease,
        tokenizer: Any,
        buckets: AspectBuckets,
        *,
        rules: CaptionRules = CaptionRules(),
        map_factor: int = 16,
        seed: int = 0,
    ) -> None:
        self.source, self.tokenizer, self.buckets = source, tokenizer, buckets
        self.rules, self.map_factor, self.seed = rules, map_factor, seed
        self.shots = shot_phrases(rules.shot_phrases)
        self.bucket_of = [buckets.index(source.row(i).height, source.row(i).width) for i in range(len(source))]

    def __len__(self) -> int:
        return len(self.source)

    def token_len(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=True).input_ids)

    def caption_ids(self, text: str) -> list[int]:
        max_len = self.rules.max_tokens
        return self.tokenizer(text, padding="max_length", max_length=max_len, truncation=True).input_ids

    def _phrase_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        import torch

        index, epoch = key
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        row = self.source.row(index)
        bucket = self.buckets.sizes[self.bucket_of[index]]
        image = self.source.image(index)
        resized, (top, left) = fit_to_bucket((image.height, image.width), bucket)
        pixels = np.asarray(image.resize(resized[::-1], resample=3), dtype=np.float32)
        pixels = pixels[top : top + bucket[0], left : left + bucket[1]]
        map_hw = (-(-bucket[0] // self.map_factor), -(-bucket[1] // self.map_factor))

        composed = compose_caption(
            row.person_type,
            row.aa_text,
            rng,
            self.token_len,
            max_tokens=self.rules.max_tokens,
            group_dropout=self.rules.group_dropout,
            optional_keep=self.rules.optional_keep,
            shots=self.shots,
        )
        uncond = rng.random() < self.rules.caption_dropout
        flip = rng.random() < self.rules.hflip
        if flip:
            pixels = pixels[:, ::-1]
        caption = "" if uncond else composed.text
        spans: list[tuple[int, int, int]] = []
        masks = torch.zeros(NUM_GROUPS + 1, *map_hw)
        parsing = self.source.parsing(index)
        if not uncond and parsing is not None:
            from PIL import Image

            segm = Image.fromarray(parsing).resize(resized[::-1], resample=Image.Resampling.NEAREST)
            segm_arr = np.asarray(segm)[top : top + bucket[0], left : left + bucket[1]]
            if flip:
                segm_arr = mirror_labels(segm_arr)
            masks, usable = group_masks(
                label_maps(segm_arr, map_hw, self.rules.mask_antialias), row.aa_ids, composed.kept_groups
            )
            found = caption_spans(self.caption_ids(caption), composed.parts, self._phrase_ids)
            for part, (start, end) in found.items():
                slot = SHOT_SLOT if part == SHOT else int(part)
                if usable[slot]:
                    spans.append((slot, start, end))
        return {
            "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1) / 127.5 - 1.0,
            "caption": caption,
            "spans": sorted(spans),
            "masks": masks,
            "uncond": uncond,
            "original_size": bucket if self.rules.time_ids == "cosmicman" else (row.height, row.width),
            "crop_top_left": (0, 0) if self.rules.time_ids == "cosmicman" else (top, left),
            "flipped": flip,
            "index": index,
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a same-bucket batch."""
    import torch

    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "masks": torch.stack([s["masks"] for s in samples]),
        "captions": [s["caption"] for s in samples],
        "spans": [s["spans"] for s in samples],
        "uncond": torch.tensor([s["uncond"] for s in samples]),
        "original_size": torch.tensor([s["original_size"] for s in samples]),
        "crop_top_left": torch.tensor([s["crop_top_left"] for s in samples]),
        "index": [s["index"] for s in samples],
    }


class BucketBatchSampler:
    """Per-epoch batches of same-bucket ``(index, epoch)`` keys, seeded; a position resumes mid-epoch."""

    def __init__(
        self, bucket_of: Sequence[int], batch_size: int, *, seed: int = 0, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.bucket_of, self.batch_size, self.seed = list(bucket_of), batch_size, seed
        self.rank, self.world = shard

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """All full batches of ``epoch`` for this shard, in order."""
        rng = random.Random(f"batches:{self.seed}:{epoch}")
        order = list(range(len(self.bucket_of)))
        rng.shuffle(order)
        by_bucket: dict[int, list[int]] = {}
        for i in order:
            by_bucket.setdefault(self.bucket_of[i], []).append(i)
        batches = [
            [(i, epoch) for i in members[k : k + self.batch_size]]
            for _, members in sorted(by_bucket.items())
            for k in range(0, len(members) - self.batch_size + 1, self.batch_size)
        ]
        rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world
        return batches[self.rank : usable : self.world]

    def iterate(self, epoch: int, position: int) -> Callable[[], Any]:
        """Generator over ``(epoch, position, batch)`` from a data position onwards, epochs without end."""

        def gen():  # noqa: ANN202
            e, p = epoch, position
            while True:
                batches = self.epoch_batches(e)
                if not batches:
                    raise InvalidInput(f"no full batch of {self.batch_size} in any bucket")
                for k in range(p, len(batches)):
                    yield e, k, batches[k]
                e, p = e + 1, 0

        return gen
