"""Near-duplicate resolution at commit time, over a per-process pHash index kept in step with the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from annotate_anyone.db.models import Image, ImageStatus, Item, ItemStatus
from annotate_anyone.pipeline.dedup import DupCandidate, PhashIndex, better

NEAR = "dedup:near"


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


def candidate(image: Image) -> DupCandidate:
    return DupCandidate(image.id, image.width, image.height, float((image.metrics or {}).get("blur", 0.0)))


def resolve(session: Session, new: Image, near: NearIndex) -> Image | None:
    """Compare a freshly inserted kept image with its near duplicates; keep the best of the cluster.

    Returns the image that ``new`` duplicates (``new`` is then marked dropped), or ``None`` when ``new``
    stays kept (the near duplicates it beat are marked dropped as duplicates of it).
    """
    if not new.phash:
        return None
    matches = [image_id for image_id, _dist in near.index.query(new.phash) if image_id != new.id]
    rivals = [
        img for img in session.scalars(select(Image).where(Image.id.in_(matches), Image.status == ImageStatus.kept))
    ]
    best = new
    for rival in rivals:
        if better(candidate(rival), candidate(best)).id == rival.id:
            best = rival
    if best is not new:
        new.status, new.drop_reason, new.duplicate_of = ImageStatus.dropped, NEAR, best.id
        return best
    for rival in rivals:
        rival.status, rival.drop_reason, rival.duplicate_of = ImageStatus.dropped, NEAR, new.id
    if rivals:  # the items that brought the demoted images in now count as duplicates
        session.execute(
            update(Item)
            .where(Item.image_id.in_([r.id for r in rivals]), Item.status == ItemStatus.kept)
            .values(status=ItemStatus.duplicate, reason=NEAR, detail=f"near duplicate of the better image {new.id}")
        )
    near.add(new.id, new.phash)
    return None
