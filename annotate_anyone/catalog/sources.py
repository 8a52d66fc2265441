"""Sources: register them, and scan them into item rows (only what is new since the cursor).

Local sources (folders, URL list files) are confined to a ``root`` folder, fixed at registration:

* in-process callers (the CLI run by the machine's user, the demo) are trusted with the path they name:
  the root is the configured source root holding it (``AA_SOURCE_ROOTS``), else the folder itself (or
  the list's folder);
* over the API (:func:`register_source`), only admins may name local paths (or lift the SSRF guard with
  ``allow_private``), and only under a configured source root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Item, Source, SourceKind
from annotate_anyone.db.base import utcnow
from annotate_anyone.errors import Conflict, InvalidInput, NotFound
from annotate_anyone.jobs.models import Job
from annotate_anyone.jobs.rows import LIVE, AlreadyRunning, stale_before
from annotate_anyone.pipeline.sources.confine import LOCAL_KINDS, local_path, real, root_for
from annotate_anyone.settings import Settings

MAX_OPTIONS_BYTES = 16 * 1024  # a source's options are reader arguments, not data


def _kind(kind: str) -> SourceKind:
    try:
        return SourceKind(kind)
    except ValueError as exc:
        raise InvalidInput(f"unknown source kind {kind!r}; one of {[k.value for k in SourceKind]}") from exc


def trusted_root(kind: str, uri: str, roots: list[Path] | None = None) -> str | None:
    """The root of a local source named by the machine's own user: the configured source root holding
    the path, else the folder itself (a folder source) or the list's folder (a URL list)."""
    if kind not in LOCAL_KINDS:
        return None
    path = local_path(uri)
    configured = root_for(path, roots or [])
    if configured is not None:
        return str(configured)
    return str(real(path) if kind == SourceKind.folder.value else real(path).parent)


def _columns(
    kind: str, uri: str, options: dict[str, Any] | None = None, allow_private: bool = False, root: str | None = None
) -> dict[str, Any]:
    """The checked column values of a new source (see :func:`create_source`)."""
    source_kind = _kind(kind)
    if len(json.dumps(options or {}, default=str)) > MAX_OPTIONS_BYTES:
        raise InvalidInput(f"source options take at most {MAX_OPTIONS_BYTES} bytes of JSON")
    proxy = (options or {}).get("proxy")
    if proxy is not None and (not isinstance(proxy, str) or urlsplit(proxy).scheme not in ("http", "https")):
        raise InvalidInput("the 'proxy' option is an http(s)://host:port URL (fetches use no other proxy)")
    if root is None:
        root = trusted_root(source_kind.value, uri)
    return {"kind": source_kind, "uri": uri, "options": options or {}, "allow_private": allow_private, "root": root}


def create_source(
    session: Session,
    *,
    name: str,
    kind: str,
    uri: str,
    options: dict[str, Any] | None = None,
    allow_private: bool = False,
    root: str | None = None,
) -> Source:
    """Register a source; names are unique. A local source without ``root`` gets :func:`trusted_root`:
    call this only for paths the machine's user named (the API goes through :func:`register_source`)."""
    columns = _columns(kind, uri, options, allow_private, root)
    if session.scalar(select(Source).where(Source.name == name)):
        raise Conflict(f"a source named {name!r} already exists")
    source = Source(name=name, **columns)
    session.add(source)
    session.flush()
    return source


def register_source(
    session: Session,
    settings: Settings,
    principal: Any,
    *,
    name: str,
    kind: str,
    uri: str,
    options: dict[str, Any] | None = None,
    allow_private: bool = False,
    reuse: bool = False,
) -> Source:
    """Register a source for an API caller: local paths and ``allow_private`` need an admin, and a local
    path must lie under one of ``AA_SOURCE_ROOTS`` (symlinks resolved). ``reuse`` returns an existing
    source of that name instead of a conflict (the dashboard's form)."""
    from annotate_anyone.access.auth import Perm, authorize

    source_kind = _kind(kind)
    local = source_kind.value in LOCAL_KINDS
    if local or allow_private:
        authorize(principal, Perm.sources_local)
    if reuse and (existing := session.scalar(select(Source).where(Source.name == name))):
        return existing
    root = None
    if local:
        if not settings.source_roots:
            raise InvalidInput("no source roots are configured (AA_SOURCE_ROOTS): local sources come from the CLI")
        found = root_for(local_path(uri), settings.source_roots)
        if found is None:
            raise InvalidInput(f"{uri[:200]} is not under a configured source root (AA_SOURCE_ROOTS)")
        root = str(found)
    if options and "local" in options and not isinstance(options["local"], bool):
        raise InvalidInput("the 'local' option is true or false")
    return create_source(
        session, name=name, kind=kind, uri=uri, options=options, allow_private=allow_private, root=root
    )


def get_or_create_source(session: Session, *, name: str, kind: str, uri: str, **fields: Any) -> Source:
    """The source called ``name``, created if missing: ``INSERT ... ON CONFLICT (name) DO NOTHING``, so two
    processes creating it at once get the same row (no error, no savepoint)."""
    source = session.scalar(select(Source).where(Source.name == name))
    if source is not None:
        return source
    columns = _columns(kind, uri, **fields)  # options, allow_private, root: as for create_source
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    session.execute(
        upsert(Source.__table__).values(name=name, **columns).on_conflict_do_nothing(index_elements=["name"])
    )
    return session.scalars(select(Source).where(Source.name == name)).one()


def get_source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"no source {source_id}")
    return source


def reader_for(source: Source, settings: Settings) -> Any:
    """The reader that lists a source's items (see annotate_anyone.pipeline.sources)."""
    from annotate_anyone.pipeline.sources import reader_for_source

    return reader_for_source(source.kind.value, source.uri, source.options or {}, source.root, settings)


def scan_source(session: Session, source: Source, settings: Settings, *, job_id: int | None = None) -> list[int]:
    """List what is new in ``source`` since its cursor, add item rows for it, and advance the cursor.

    Items already known (same source and URI) are not added twice. Returns the new item ids.
    """
    if source.taken_down:
        return []
    items, cursor = reader_for(source, settings).scan(source.cursor)
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


# ------------------------------------------------------------------------------ claims of ingest jobs


def claim_source(session: Session, source_id: int, job_id: int, settings: Settings) -> None:
    """Make ``job_id`` the one job listing ``source_id``; raise :class:`AlreadyRunning` while another live
    job holds it. A holder that finished or whose heartbeat went stale is replaced. One atomic UPDATE
    (the holder's heartbeat is committed before it claims, so a concurrent claimer sees it alive)."""
    holder_alive = (
        select(Job.id)
        .where(Job.id == Source.claimed_by, Job.status.in_(LIVE), Job.heartbeat_at >= stale_before(settings))
        .exists()
    )
    claimed = session.execute(
        update(Source)
        .where(
            Source.id == source_id,
            or_(Source.claimed_by.is_(None), Source.claimed_by == job_id, ~holder_alive),
        )
        .values(claimed_by=job_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        holder = session.scalar(select(Source.claimed_by).where(Source.id == source_id))
        if holder is None:  # released between the two statements: try once more
            return claim_source(session, source_id, job_id, settings)
        raise AlreadyRunning(f"already running: job {holder} is ingesting source {source_id}", holder)


def release_claims(session: Session, job_id: int) -> None:
    """Free every source ``job_id`` holds (the job ended)."""
    session.execute(
        update(Source)
        .where(Source.claimed_by == job_id)
        .values(claimed_by=None)
        .execution_options(synchronize_session=False)
    )
