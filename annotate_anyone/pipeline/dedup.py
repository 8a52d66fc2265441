"""Near-duplicate search over 64-bit perceptual hashes by multi-index hashing, and the keep-the-best rule.

The 64 bits are split into ``threshold + 1`` bands: two hashes within ``threshold`` bits agree exactly
on at least one band (pigeonhole), so a query looks up its band values in per-band sorted arrays and
verifies the few candidates with a popcount. Additions go to a pending buffer (scanned linearly with
a vectorised popcount) that is merged into the sorted arrays once it reaches 1/16 of the index, so
bulk builds, incremental adds and queries all stay fast.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from annotate_anyone.errors import InvalidInput


def phash_to_int(phash: str) -> int:
    """The 16-hex-char hash as an unsigned 64-bit integer."""
    if len(phash) != 16:
        raise InvalidInput(f"a 64-bit pHash has 16 hex chars, got {phash!r}")
    return int(phash, 16)


def hamming(a: str, b: str) -> int:
    """Hamming distance between two 16-hex-char hashes."""
    return (phash_to_int(a) ^ phash_to_int(b)).bit_count()


def _band_layout(bands: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of each band, widths as even as possible over 64 bits."""
    widths = [64 // bands + (1 if i < 64 % bands else 0) for i in range(bands)]
    layout, shift = [], 64
    for width in widths:
        shift -= width
        layout.append((shift, width))
    return layout


class PhashIndex:
    """Multi-index hash table of ``(id, phash)`` pairs answering "which ids are within ``threshold`` bits"."""

    def __init__(self, threshold: int = 4, merge_every: int = 4096) -> None:
        if not 0 <= threshold < 32:
            raise InvalidInput("threshold must be between 0 and 31 bits")
        self.threshold = threshold
        self.merge_every = merge_every
        self._layout = _band_layout(threshold + 1)
        self._ids = np.empty(0, dtype=np.int64)
        self._hashes = np.empty(0, dtype=np.uint64)
        self._keys: list[np.ndarray] = []  # per band: sorted band values
        self._order: list[np.ndarray] = []  # per band: positions into _ids/_hashes in that order
        self._pending_ids = np.empty(256, dtype=np.int64)  # grows by doubling; first _pending_n are live
        self._pending_hashes = np.empty(256, dtype=np.uint64)
        self._pending_n = 0
        self._build()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, str]], threshold: int = 4) -> PhashIndex:
        """Build from ``(id, phash_hex)`` rows (e.g. straight from the images table); ``None`` hashes skipped."""
        index = cls(threshold)
        ids, hashes = [], []
        for item_id, phash in pairs:
            if phash:
                ids.append(item_id)
                hashes.append(phash_to_int(phash))
        index._ids = np.asarray(ids, dtype=np.int64)
        index._hashes = np.asarray(hashes, dtype=np.uint64)
        index._build()
        return index

    def __len__(self) -> int:
        return len(self._ids) + self._pending_n

    def add(self, item_id: int, phash: str) -> None:
        """Add one hash; it is searchable at once."""
        value = phash_to_int(phash)
        if self._pending_n == len(self._pending_ids):
            self._pending_ids = np.resize(self._pending_ids, 2 * self._pending_n)
            self._pending_hashes = np.resize(self._pending_hashes, 2 * self._pending_n)
        self._pending_ids[self._pending_n] = item_id
        self._pending_hashes[self._pending_n] = value
        self._pending_n += 1
        if self._pending_n >= max(self.merge_every, len(self._ids) // 16):
            self._merge()

    def query(self, phash: str, threshold: int | None = None) -> list[tuple[int, int]]:
        """``(id, distance)`` of every entry within ``threshold`` bits (default: the index's), nearest first."""
        limit = self.threshold if threshold is None else threshold
        if limit > self.threshold:
            raise InvalidInput(f"this index answers up to {self.threshold} bits, not {limit}")
        value = phash_to_int(phash)
        found: dict[int, int] = {}
        if len(self._ids):
            positions = [self._band_hits(band, value) for band in range(len(self._layout))]
            candidates = np.unique(np.concatenate(positions))
            if len(candidates):
                distances = np.bitwise_count(self._hashes[candidates] ^ np.uint64(value))
                for pos in np.flatnonzero(distances <= limit):
                    found[int(self._ids[candidates[pos]])] = int(distances[pos])
        if self._pending_n:
            pending = np.bitwise_count(self._pending_hashes[: self._pending_n] ^ np.uint64(value))
            for pos in np.flatnonzero(pending <= limit):
                found[int(self._pending_ids[pos])] = int(pending[pos])
        return sorted(found.items(), key=lambda kv: (kv[1], kv[0]))

    def to_bytes(self) -> bytes:
        """Serialise (ids and hashes; band tables are rebuilt on load)."""
        self._merge()
        buf = io.BytesIO()
        np.savez(buf, ids=self._ids, hashes=self._hashes, threshold=np.int64(self.threshold))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PhashIndex:
        arrays = np.load(io.BytesIO(data))
        index = cls(int(arrays["threshold"]))
        index._ids, index._hashes = arrays["ids"], arrays["hashes"]
        index._build()
        return index

    def _band_hits(self, band: int, value: int) -> np.ndarray:
        shift, width = self._layout[band]
        key = np.uint64((value >> shift) & ((1 << width) - 1))
        keys = self._keys[band]
        lo, hi = np.searchsorted(keys, key, "left"), np.searchsorted(keys, key, "right")
        return self._order[band][lo:hi]

    def _merge(self) -> None:
        if not self._pending_n:
            return
        self._ids = np.concatenate([self._ids, self._pending_ids[: self._pending_n]])
        self._hashes = np.concatenate([self._hashes, self._pending_hashes[: self._pending_n]])
        self._pending_n = 0
        self._build()

    def _build(self) -> None:
        self._keys, self._order = [], []
        for shift, width in self._layout:
            values = (self._hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            order = np.argsort(values, kind="stable")
            self._keys.append(values[order])
            self._order.append(order)


@dataclass(frozen=True, slots=True)
class DupCandidate:
    """What the keep-the-best rule needs to know about one image of a near-duplicate cluster."""

    id: int
    width: int
    height: int
    blur: float = 0.0


def _rank(c: DupCandidate) -> tuple[int, float, int]:
    return (c.width * c.height, c.blur, -c.id)


def better(a: DupCandidate, b: DupCandidate) -> DupCandidate:
    """The one to keep of two near duplicates: more pixels, then sharper, then the older (smaller id)."""
    return a if _rank(a) >= _rank(b) else b


def keeper(cluster: Sequence[DupCandidate]) -> DupCandidate:
    """The image to keep of a near-duplicate cluster; the others are recorded as its duplicates."""
    if not cluster:
        raise InvalidInput("an empty cluster has no keeper")
    return max(cluster, key=_rank)
