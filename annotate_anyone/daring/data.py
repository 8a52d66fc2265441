"""Training data: a CosmicMan-HQ style release (parquet index + data root) as bucketed, captioned samples.

The index has one row per image: ``path``, ``segm_path`` (relative to the data root), ``height``,
``width``, ``person_type``, ``aa_text`` and ``aa_ids`` (JSON lists of 20 entries, or null).
``aa_text`` keys may be in either spelling (releases before ``release_keys`` used identifiers such
as ``hair_color``); rows are read under the taxonomy's rule, in release spelling.
Any object with the :class:`SampleSource` shape (e.g. a release loader) can replace
:class:`ParquetRelease`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.daring.buckets import AspectBuckets
from annotate_anyone.daring.captions import NUM_GROUPS, SHOT, compose_caption, shot_phrases
from annotate_anyone.daring.masks import SHOT_SLOT, group_masks, label_maps, mirror_labels
from annotate_anyone.daring.spans import caption_spans
from annotate_anyone.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from PIL import Image

INDEX_COLUMNS = ("path", "segm_path", "height", "width", "person_type", "aa_text", "aa_ids")


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One index row, with ``aa_text``/``aa_ids`` decoded."""

    path: str
    segm_path: str | None
    height: int
    width: int
    person_type: str | None
    aa_text: list[dict[str, Any] | None] | None
    aa_ids: list[list[int] | None] | None


class SampleSource(Protocol):
    """What the trainer needs from a release: rows, images and parsing maps."""

    def __len__(self) -> int: ...
    def row(self, index: int) -> SampleRow: ...
    def image(self, index: int) -> Image.Image: ...
    def parsing(self, index: int) -> np.ndarray | None: ...


def _decode_json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _aa_text(value: Any) -> list[dict[str, Any] | None] | None:
    entries = _decode_json(value)
    return None if entries is None else load_taxonomy().release_aa_text(entries)


class ParquetRelease:
    """A release read directly from its parquet index and data root."""

    def __init__(self, parquet: Path | Sequence[Path], data_root: Path) -> None:
        import pyarrow.parquet as pq

        files = [Path(parquet)] if isinstance(parquet, (str, Path)) else [Path(p) for p in parquet]
        if not files:
            raise NotFound("no parquet index given")
        self.data_root = Path(data_root)
        self.rows: list[SampleRow] = []
        for file in files:
            if not file.exists():
                raise NotFound(f"release index {file} does not exist")
            table = pq.read_table(file)
            missing = [c for c in INDEX_COLUMNS if c not in table.column_names]
            if missing:
                raise InvalidInput(f"{file} lacks columns {missing}")
            for rec in table.select(list(INDEX_COLUMNS)).to_pylist():
                self.rows.append(
                    SampleRow(
                        path=rec["path"],
                        segm_path=rec["segm_path"],
                        height=int(rec["height"]),
                        width=int(rec["width"]),
                        person_type=rec["person_type"],
                        aa_text=_aa_text(rec["aa_text"]),
                        aa_ids=_decode_json(rec["aa_ids"]),
                    )
                )

    @classmethod
    def open(cls, location: Path, data_root: Path | None = None) -> ParquetRelease:
        """A parquet file (data root: its folder) or a folder holding ``*.parquet`` (searched recursively)."""
        location = Path(location)
        if location.is_dir():
            files = sorted(location.rglob("*.parquet"))
            return cls(files, data_root or location)
        return cls(location, data_root or location.parent)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> SampleRow:
        return self.rows[index]

    def image(self, index: int) -> Image.Image:
        from PIL import Image

        with Image.open(self.data_root / self.rows[index].path) as img:
            return img.convert("RGB")

    def parsing(self, index: int) -> np.ndarray | None:
        from PIL import Image

        segm = self.rows[index].segm_path
        if not segm:
            return None
        with Image.open(self.data_root / segm) as img:
            return np.asarray(img, dtype=np.uint8)


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
        source: SampleSource,
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
