"""Dedup in one place: exact duplicates (same bytes), near duplicates (64-bit pHashes) and the keep-the-best rule.

Exact duplicates: :func:`drop_seen` (:func:`known_images`, then :func:`mark_exact_duplicates`) is the check the
``seen`` pipeline stage runs before the expensive stages (``catalog.ingest`` passes it to the pipeline); the
unique constraint on ``images.sha256`` at commit time (``catalog.ingest``) is what guarantees one row per
distinct original when batches run concurrently.

Near duplicates: search over 64-bit perceptual hashes by multi-index hashing. The 64 bits are split into
``threshold + 1`` bands: two hashes within ``threshold`` bits agree exactly on at least one band
(pigeonhole), so a query looks up its band values in per-band sorted arrays and verifies the few
candidates with a popcount. Additions go to a pending buffer (scanned linearly with a vectorised
popcount) that is merged into the sorted arrays once it reaches 1/16 of the index, so bulk builds,
incremental adds and queries all stay fast. At commit time :func:`resolve_batch` keeps the best image of
each cluster over a per-process index kept in step with the database (:func:`index_for`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Image, ImageStatus, Item, ItemStatus
from annotate_anyone.errors import InvalidInput

if TYPE_CHECKING:
    from annotate_anyone.pipeline.record import Record

DUPLICATE = "dedup:exact"
NEAR = "dedup:near"


# ------------------------------------------------------------------------------- exact duplicates


def known_images(session: Session, digests: set[str]) -> dict[str, int]:
    """``{sha256: image id}`` of the given digests that are already image rows."""
    return dict(session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(digests))).all())


def drop_seen(session: Session, live: list[Record]) -> None:
    """The ``seen`` stage's check: drop records whose bytes are already an image, or repeat an earlier record."""
    mark_exact_duplicates(live, known_images(session, {r.sha256 for r in live if r.sha256}))


def mark_exact_duplicates(live: list[Record], known: dict[str, int]) -> None:
    """Drop records whose sha256 is a known image, or repeats an earlier record of the batch."""
    first: dict[str, int] = {}
    for record in live:
        if record.sha256 in known:
            record.meta["duplicate_of_image"] = known[record.sha256]
            record.drop(DUPLICATE, "same bytes as an image already in the pool")
        elif record.sha256 in first:
            record.drop(DUPLICATE, f"same bytes as item {first[record.sha256]} of this batch")
        elif record.sha256:
            first[record.sha256] = record.item_id


# -------------------------------------------------------------------------------- near duplicates


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


# ------------------------------------------------------------------ near duplicates at commit time


@dataclass
class NearIndex:
    """A pHash index of the kept images with ids up to ``last_id`` (ids are committed in order under the lock)."""

    index: PhashIndex
    last_id: int = 0

    def add(self, image_id: int, phash: str) -> None:
        if image_id > self.last_id:
            self.index.add(image_id, phash)
            self.last_id = image_id


_CACHES: dict[tuple[str, int], NearIndex] = {}


def lock_for_dedup(session: Session) -> None:
    """Serialise near-duplicate decisions across concurrent workers (PostgreSQL advisory lock).

    SQLite already allows one writer at a time, so it needs nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(727274)"))


def index_for(session: Session, threshold: int) -> NearIndex:
    """The process's index for this database, with every kept image added since the last call."""
    key = (str(session.get_bind().url), threshold)
    cache = _CACHES.get(key)
    if cache is None:
        cache = _CACHES[key] = NearIndex(PhashIndex(threshold=threshold))
    rows = session.execute(
        select(Image.id, Image.phash)
        .where(Image.id > cache.last_id, Image.phash.is_not(None), Image.status == ImageStatus.kept)
        .order_by(Image.id)
    ).all()
    for image_id, phash in rows:
        cache.add(image_id, phash)
    return cache


@dataclass(frozen=True, slots=True)
class NewImage:
    """A freshly inserted kept image, as near-duplicate resolution needs it."""

    id: int
    phash: str
    width: int
    height: int
    blur: float = 0.0

    @property
    def candidate(self) -> DupCandidate:
        return DupCandidate(self.id, self.width, self.height, self.blur)


def resolve_batch(session: Session, news: list[NewImage], near: NearIndex) -> dict[int, int]:
    """Resolve a batch of freshly inserted kept images (in id order); keep the best of each cluster.

    Each new image is compared with the kept images it is near (older ones from the database, and the
    batch's own survivors so far): if one of them is better, the new image is demoted; otherwise the
    ones it beats are. Demoted images are marked dropped (``dedup:near``, ``duplicate_of``) in two
    executemany UPDATEs, and the items of older demoted images become duplicates. Three statements for
    the whole batch. Returns ``{demoted image id: better image id}``; the caller records the outcome of
    the batch's own items. Call under :func:`lock_for_dedup` with an index from :func:`index_for`.
    """
    older = {image_id for new in news for image_id, _dist in near.index.query(new.phash)}
    known: dict[int, DupCandidate] = {}
    if older:
        rows = session.execute(
            select(Image.id, Image.width, Image.height, Image.metrics).where(
                Image.id.in_(older), Image.status == ImageStatus.kept
            )
        ).all()
        known = {i: DupCandidate(i, w, h, float((m or {}).get("blur", 0.0))) for i, w, h, m in rows}
    demoted: dict[int, int] = {}
    for new in news:
        rivals = [known[i] for i, _dist in near.index.query(new.phash) if i in known and i not in demoted]
        best = new.candidate
        for rival in rivals:
            best = better(rival, best)
        if best.id != new.id:
            demoted[new.id] = best.id
            continue
        for rival in rivals:
            demoted[rival.id] = new.id
        known[new.id] = best
        near.add(new.id, new.phash)
    _record_demotions(session, demoted, fresh={new.id for new in news})
    return demoted


def _record_demotions(session: Session, demoted: dict[int, int], fresh: set[int]) -> None:
    if not demoted:
        return
    images = Image.__table__
    session.execute(
        update(images)
        .where(images.c.id == bindparam("b_id"))
        .values(status=ImageStatus.dropped, drop_reason=NEAR, duplicate_of=bindparam("b_better")),
        [{"b_id": loser, "b_better": winner} for loser, winner in demoted.items()],
    )
    older = [(loser, winner) for loser, winner in demoted.items() if loser not in fresh]
    if older:  # the items that brought the demoted images in now count as duplicates
        items = Item.__table__
        session.execute(
            update(items)
            .where(items.c.image_id == bindparam("b_id"), items.c.status == ItemStatus.kept)
            .values(status=ItemStatus.duplicate, reason=NEAR, detail=bindparam("b_detail")),
            [{"b_id": loser, "b_detail": f"near duplicate of the better image {winner}"} for loser, winner in older],
        )
