"""Takedown filter: content taken down (by hash, URL or source) never re-enters the pool."""

from __future__ import annotations

from sqlalchemy import or_, select

from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage

TAKEN_DOWN = "takedown"


class TakedownFilter(Stage):
    """Drops records whose sha256, URL or source has a takedown; runs after decode (the hash is known)."""

    name = "takedown"

    def __init__(self, db_url: str | None = None) -> None:
        super().__init__()
        self.db_url = db_url

    def _run(self, live: list[Record]) -> None:
        from annotate_anyone.catalog.models import Takedown
        from annotate_anyone.db.base import session_scope

        shas = {r.sha256 for r in live if r.sha256}
        urls = {r.uri for r in live}
        sources = {r.source_id for r in live if r.source_id is not None}
        with session_scope(self.db_url) as session:
            rows = session.execute(
                select(Takedown.sha256, Takedown.url, Takedown.source_id).where(
                    or_(Takedown.sha256.in_(shas), Takedown.url.in_(urls), Takedown.source_id.in_(sources))
                )
            ).all()
        bad_sha = {r.sha256 for r in rows if r.sha256}
        bad_url = {r.url for r in rows if r.url}
        bad_source = {r.source_id for r in rows if r.source_id is not None}
        for record in live:
            if record.sha256 in bad_sha or record.uri in bad_url or record.source_id in bad_source:
                record.drop(TAKEN_DOWN, "taken down; it is excluded from the pool and every later release")
