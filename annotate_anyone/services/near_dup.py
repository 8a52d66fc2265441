"""Near-duplicate resolution at commit time, over a per-process pHash index kept in step with the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, text, update
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
