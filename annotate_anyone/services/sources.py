"""Sources: register them, and scan them into item rows (only what is new since the cursor)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.db.base import utcnow
from annotate_anyone.db.models import Item, Source, SourceKind
from annotate_anyone.errors import Conflict, InvalidInput, NotFound


def create_source(
    session: Session,
    *,
    name: str,
    kind: str,
    uri: str,
    options: dict[str, Any] | None = None,
    allow_private: bool = False,
) -> Source:
    """Register a source; names are unique."""
    try:
        source_kind = SourceKind(kind)
    except ValueError as exc:
        raise InvalidInput(f"unknown source kind {kind!r}; one of {[k.value for k in SourceKind]}") from exc
    if session.scalar(select(Source).where(Source.name == name)):
        raise Conflict(f"a source named {name!r} already exists")
    source = Source(name=name, kind=source_kind, uri=uri, options=options or {}, allow_private=allow_private)
    session.add(source)
    session.flush()
    return source


def get_or_create_source(session: Session, *, name: str, kind: str, uri: str, **kwargs: Any) -> Source:
    """The source called ``name``, created if missing."""
    source = session.scalar(select(Source).where(Source.name == name))
    return source or create_source(session, name=name, kind=kind, uri=uri, **kwargs)


def get_source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"no source {source_id}")
    return source


def reader_for(source: Source) -> Any:
    """The reader that lists a source's items (see annotate_anyone.pipeline.sources)."""
    from annotate_anyone.pipeline.sources import reader_for_source

    return reader_for_source(source.kind.value, source.uri, source.options or {})


def scan_source(session: Session, source: Source, *, job_id: int | None = None) -> list[int]:
    """List what is new in ``source`` since its cursor, add item rows for it, and advance the cursor.

    Items already known (same source and URI) are not added twice. Returns the new item ids.
    """
    if source.taken_down:
        return []
    items, cursor = reader_for(source).scan(source.cursor)
    uris = [it.uri for it in items]
    known: set[str] = set()
    for chunk in range(0, len(uris), 500):
        part = uris[chunk : chunk + 500]
        known.update(session.scalars(select(Item.uri).where(Item.source_id == source.id, Item.uri.in_(part))))
    rows = []
    for it in items:
        if it.uri in known:
            continue
        known.add(it.uri)
        rows.append(Item(source_id=source.id, uri=it.uri, meta=it.meta or {}, job_id=job_id))
    session.add_all(rows)
    source.cursor = cursor
    source.last_scan_at = utcnow()
    session.flush()
    return [r.id for r in rows]


def guess_kind(uri: str) -> str:
    """``s3://`` -> s3_prefix; a file with a list extension -> url_list; anything else -> folder."""
    if uri.startswith("s3://"):
        return SourceKind.s3_prefix.value
    if uri.lower().endswith((".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")):
        return SourceKind.url_list.value
    return SourceKind.folder.value
