"""Object storage: :func:`open_store` picks the implementation from a URL."""

from __future__ import annotations

from annotate_anyone.settings import Settings, get_settings
from annotate_anyone.storage.base import ObjectStore, content_key
from annotate_anyone.storage.local import LocalStore

__all__ = ["ObjectStore", "LocalStore", "content_key", "open_store"]


def open_store(url: str | None = None, settings: Settings | None = None) -> ObjectStore:
    """``s3://bucket/prefix`` gives an :class:`S3Store`; a path or ``file://`` URL a :class:`LocalStore`."""
    settings = settings or get_settings()
    url = url or settings.store_url
    if url.startswith("s3://"):
        from annotate_anyone.storage.s3 import S3Store

        return S3Store.from_url(url, settings)
    return LocalStore(url.removeprefix("file://"))
