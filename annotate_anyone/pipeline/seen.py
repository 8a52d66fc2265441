"""Exact-duplicate pre-check: skip bytes the database already holds before the expensive stages."""

from __future__ import annotations

from sqlalchemy import select

from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage

DUPLICATE = "dedup:exact"


class SeenFilter(Stage):
    """Drops records whose sha256 is already an image row, or repeats an earlier record of the batch.

    This is an optimisation; the unique constraint on ``images.sha256`` at commit time is what
    guarantees one row per distinct original when batches run concurrently.
    """

    name = "seen"

    def __init__(self, db_url: str | None = None) -> None:
        super().__init__()
        self.db_url = db_url

    def _run(self, live: list[Record]) -> None:
        from annotate_anyone.db.base import session_scope
        from annotate_anyone.db.models import Image

        digests = {r.sha256 for r in live if r.sha256}
        with session_scope(self.db_url) as session:
            rows = session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(digests))).all()
        known = {sha: image_id for sha, image_id in rows}
        first: dict[str, int] = {}
        for record in live:
            if record.sha256 in known:
                record.meta["duplicate_of_image"] = known[record.sha256]
                record.drop(DUPLICATE, "same bytes as an image already in the pool")
            elif record.sha256 in first:
                record.drop(DUPLICATE, f"same bytes as item {first[record.sha256]} of this batch")
            elif record.sha256:
                first[record.sha256] = record.item_id
