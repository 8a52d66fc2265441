"""Stages that ask what the pool already holds: ``seen`` (exact duplicates) and ``takedown``.

The pipeline names no table: each stage runs a :data:`PoolCheck` it is given, in one short session per batch.
Whoever builds an ingest pipeline passes the checks (:class:`annotate_anyone.pipeline.build.PoolChecks`); the
catalog implements them (``catalog.dedup.drop_seen``, ``catalog.takedown.drop_taken_down``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage

PoolCheck = Callable[[Session, list[Record]], None]  # drops the live records the pool refuses


class PoolFilter(Stage):
    """Runs its check over the batch's live records in one session of ``db_url``."""

    def __init__(self, check: PoolCheck, db_url: str | None = None) -> None:
        super().__init__()
        self.check = check
        self.db_url = db_url

    def _run(self, live: list[Record]) -> None:
        from annotate_anyone.db.base import session_scope

        with session_scope(self.db_url) as session:
            self.check(session, live)


class SeenFilter(PoolFilter):
    """Drops records whose sha256 is already an image row, or repeats an earlier record of the batch.

    This is an optimisation before the expensive stages; the unique constraint on ``images.sha256`` at
    commit time is what guarantees one row per distinct original when batches run concurrently.
    """

    name = "seen"


class TakedownFilter(PoolFilter):
    """Drops records whose sha256, URL or source has a takedown; runs after decode (the hash is known)."""

    name = "takedown"
