"""Release use cases for the API and the CLI (thin callers translate to and from HTTP / the terminal).

The rule "only the files the manifest lists can be downloaded" lives here, once: :func:`file_key`.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotate_anyone.errors import NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import load_manifest, manifest_files, published_versions
from annotate_anyone.release.materialize import materialize
from annotate_anyone.release.models import Release
from annotate_anyone.release.verify import VerifyReport, verify_release
from annotate_anyone.storage.base import ObjectStore

__all__ = [
    "count_releases",
    "file_key",
    "file_names",
    "file_url",
    "get_manifest",
    "get_release",
    "list_published",
    "list_releases",
    "materialize",
    "open_file",
    "verify",
]


def count_releases(session: Session) -> int:
    """How many releases were published (the pool overview shows it)."""
    return session.scalar(select(func.count(Release.id))) or 0


def list_releases(session: Session, *, limit: int = 50, offset: int = 0) -> list[Release]:
    """Release rows, newest first."""
    return list(session.scalars(select(Release).order_by(Release.id.desc()).limit(limit).offset(offset)))


def get_release(session: Session, version: str) -> Release:
    """The release row of ``version``; :class:`NotFound` if there is none."""
    release = session.scalar(select(Release).where(Release.version == version))
    if release is None:
        raise NotFound(f"no release {version!r}")
    return release


def list_published(store: ObjectStore) -> list[str]:
    """Published versions, oldest first."""
    return published_versions(store)


def get_manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    return load_manifest(store, version)


def file_names(store: ObjectStore, version: str) -> list[str]:
    """Every downloadable file of a version: ``manifest.json`` and the files the manifest pins."""
    return [paths.MANIFEST, *(f["name"] for f in manifest_files(load_manifest(store, version)))]


def file_key(store: ObjectStore, version: str, name: str) -> str:
    """The store key of ``name`` if the version's manifest lists it (nothing else can be downloaded).

    ``manifest.json`` itself is always listed, so its key is returned without reading it."""
    if name != paths.MANIFEST and name not in file_names(store, version):
        raise NotFound(f"release {version!r} lists no file {name!r}")
    return paths.key(version, name)


def file_url(store: ObjectStore, version: str, name: str, *, expires: int = 3600) -> str | None:
    """A presigned URL for one release file (S3), or ``None`` where the API must stream it (local)."""
    return store.url_for(file_key(store, version, name), expires=expires)


def open_file(store: ObjectStore, version: str, name: str) -> BinaryIO:
    """A stream of one release file, for the API's authenticated download route."""
    return store.open(file_key(store, version, name))


def verify(store: ObjectStore, version: str, session: Session | None = None) -> VerifyReport:
    """Verify a release; with a session, its manifest digest must also match the database's."""
    expected = None
    if session is not None:
        expected = session.scalar(select(Release.digest).where(Release.version == version))
    return verify_release(store, version, expected_digest=expected)
