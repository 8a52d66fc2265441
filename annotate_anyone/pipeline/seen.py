"""Exact-duplicate pre-check: skip bytes the database already holds before the expensive stages."""

from __future__ import annotations

from annotate_anyone.catalog.dedup import known_images, mark_exact_duplicates
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage


class SeenFilter(Stage):
    """Drops records whose sha256 is already an image row, or repeats an earlier record of the batch.

    This is an optimisation; the unique constraint on ``images.sha256`` at commit time is what
    guarantees one row per distinct original when batches run concurrently (see ``catalog.dedup``).
    """

    name = "seen"

    def __init__(self, db_url: str | None = None) -> None:
        super().__init__()
        self.db_url = db_url

    def _run(self, live: list[Record]) -> None:
        from annotate_anyone.db.base import session_scope

        digests = {r.sha256 for r in live if r.sha256}
        with session_scope(self.db_url) as session:
            known = known_images(session, digests)
        mark_exact_duplicates(live, known)
