"""Takedowns: an image (by hash), a URL or a whole source leaves every later release.

A takedown is a row (who asked, why, when). It marks the matching images ``taken_down`` and a
source ``taken_down``; exports exclude anything a takedown covers even if the image is ingested
again later, and ingest drops new content a takedown covers (:func:`drop_taken_down`, the ``takedown``
pipeline stage's check). Each release publishes ``tombstones.json``: every taken-down image hash (cumulative),
with the takedown's kind, reason and date, and whether the image was in the parent release.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Image, ImageStatus, Item, Source, Takedown, TakedownKind
from annotate_anyone.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from annotate_anyone.pipeline.record import Record

TAKEN_DOWN = "takedown"  # the drop reason of ingested content a takedown covers


def take_down(
    session: Session,
    *,
    sha256: str | None = None,
    url: str | None = None,
    source: int | str | None = None,
    reason: str,
    requested_by: str | None = None,
) -> Takedown:
    """Record a takedown of exactly one of: an image hash, a URL, a source (id or name)."""
    given = [n for n, v in (("sha256", sha256), ("url", url), ("source", source)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("a takedown names exactly one of sha256, url or source")
    if not reason.strip():
        raise InvalidInput("a takedown needs a reason")
    row = Takedown(reason=reason.strip(), requested_by=requested_by)
    if sha256 is not None:
        sha = sha256.strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise InvalidInput(f"not a sha256 hex digest: {sha256!r}")
        row.kind, row.sha256 = TakedownKind.image, sha
        images = select(Image.id).where(Image.sha256 == sha)
    elif url is not None:
        row.kind, row.url = TakedownKind.url, url.strip()
        by_item = select(Item.image_id).where(Item.uri == row.url, Item.image_id.is_not(None))
        images = select(Image.id).where(or_(Image.source_uri == row.url, Image.id.in_(by_item)))
    else:
        src = _source(session, source)
        row.kind, row.source_id = TakedownKind.source, src.id
        src.taken_down = True
        images = select(Image.id).where(Image.source_id == src.id)
    session.add(row)
    session.execute(
        update(Image)
        .where(Image.id.in_(images))
        .values(status=ImageStatus.taken_down, drop_reason=f"takedown:{row.kind.value}")
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    return row


def _source(session: Session, source: int | str | None) -> Source:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        found = session.get(Source, int(source))
    else:
        found = session.scalar(select(Source).where(Source.name == source))
    if found is None:
        raise NotFound(f"no source {source!r}")
    return found


def is_taken_down(
    session: Session, *, sha256: str | None = None, url: str | None = None, source_id: int | None = None
) -> bool:
    """Whether new content with this hash, from this URL or this source must be refused (for ingest)."""
    clauses = []
    if sha256:
        clauses.append(Takedown.sha256 == sha256)
    if url:
        clauses.append(Takedown.url == url)
    if source_id is not None:
        clauses.append(Takedown.source_id == source_id)
    if not clauses:
        return False
    return session.scalar(select(Takedown.id).where(or_(*clauses)).limit(1)) is not None


def drop_taken_down(session: Session, live: list[Record]) -> None:
    """The ``takedown`` stage's check: drop records whose sha256, URL or source has a takedown."""
    shas = {r.sha256 for r in live if r.sha256}
    urls = {r.uri for r in live}
    sources = {r.source_id for r in live if r.source_id is not None}
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


def list_takedowns(session: Session, *, limit: int = 100, offset: int = 0) -> list[Takedown]:
    return list(session.scalars(select(Takedown).order_by(Takedown.id.desc()).limit(limit).offset(offset)))


def tombstones(session: Session, parent_hashes: Collection[str] = ()) -> list[dict[str, Any]]:
    """Every taken-down image hash, oldest takedown first, one entry per hash."""
    parent = set(parent_hashes)
    entries: dict[str, dict[str, Any]] = {}
    for td in session.scalars(select(Takedown).order_by(Takedown.created_at, Takedown.id)):
        if td.kind == TakedownKind.image:
            hashes = [td.sha256]
        elif td.kind == TakedownKind.url:
            by_item = select(Item.image_id).where(Item.uri == td.url, Item.image_id.is_not(None))
            hashes = session.scalars(select(Image.sha256).where(or_(Image.source_uri == td.url, Image.id.in_(by_item))))
        else:
            hashes = session.scalars(select(Image.sha256).where(Image.source_id == td.source_id))
        for sha in hashes:
            if sha and sha not in entries:
                entries[sha] = {
                    "sha256": sha,
                    "kind": td.kind.value,
                    "reason": td.reason,
                    "taken_down_at": td.created_at.isoformat(),
                    "takedown_id": td.id,
                }
    for sha, reason in session.execute(
        select(Image.sha256, Image.drop_reason).where(Image.status == ImageStatus.taken_down)
    ):
        entries.setdefault(
            sha,
            {
                "sha256": sha,
                "kind": "image",
                "reason": reason or "taken down",
                "taken_down_at": None,
                "takedown_id": None,
            },
        )
    out = list(entries.values())
    for entry in out:
        entry["in_parent"] = entry["sha256"] in parent
    return out
