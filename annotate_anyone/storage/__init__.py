"""Object storage: :func:`open_store` picks the implementation from a URL."""

from __future__ import annotations

from annotate_anyone.errors import ConfigError
from annotate_anyone.settings import Settings
from annotate_anyone.storage.base import ObjectStore, content_key
from annotate_anyone.storage.local import LocalStore

__all__ = ["ObjectStore", "LocalStore", "content_key", "open_store"]


def open_store(url: str | None = None, settings: Settings | None = None) -> ObjectStore:
    """``s3://bucket/prefix`` gives an :class:`S3Store`; a path or ``file://`` URL a :class:`LocalStore`.

    ``url`` defaults to ``settings.store_url``. ``settings`` give an S3 store its endpoint and credentials
    (required there) and a local store its unsynced prefixes; nothing here reads the environment.
    """
    if url is None:
        if settings is None:
            raise ConfigError("open_store needs a store URL or the settings")
        url = settings.store_url
    if url.startswith("s3://"):
        from annotate_anyone.storage.s3 import S3Store

        if settings is None:
            raise ConfigError(f"{url}: an S3 store needs the settings (endpoint, credentials, region)")
        return S3Store.from_url(url, settings)
    unsynced = settings.store_unsynced_prefixes if settings is not None else None
    return LocalStore(url.removeprefix("file://"), unsynced_prefixes=unsynced)
