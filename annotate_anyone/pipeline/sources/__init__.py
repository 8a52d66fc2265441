"""Source readers: each lists the items of one source that are new since its cursor (no database access)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from annotate_anyone.errors import InvalidInput
from annotate_anyone.pipeline.sources.base import SourceItem, SourceReader

if TYPE_CHECKING:
    from annotate_anyone.settings import Settings

__all__ = ["SourceItem", "SourceReader", "reader_for_source"]

_URL_LIST_OPTIONS = ("url_column", "caption_column", "meta_columns", "format", "local")
_FOLDER_OPTIONS = ("pattern", "extensions")
_S3_OPTIONS = ("extensions", "page_size", "order")


def reader_for_source(
    kind: str,
    uri: str,
    options: dict[str, Any] | None = None,
    root: str | None = None,
    settings: Settings | None = None,
) -> SourceReader:
    """The reader for a source row: ``kind`` is ``url_list``, ``folder`` or ``s3_prefix``; ``options`` are
    the reader's keyword arguments as stored on the source (unknown keys are ignored); ``root`` the folder
    a local source's own path must resolve under; ``settings`` give ``s3_prefix`` its endpoint and credentials."""
    options = options or {}
    if kind == "url_list":
        from annotate_anyone.pipeline.sources.url_list import UrlListReader

        kwargs = {k: v for k, v in options.items() if k in _URL_LIST_OPTIONS}
        return UrlListReader(uri, **kwargs, confine_to=root)
    if kind == "folder":
        from annotate_anyone.pipeline.sources.folder import FolderReader

        return FolderReader(uri, **{k: v for k, v in options.items() if k in _FOLDER_OPTIONS}, confine_to=root)
    if kind == "s3_prefix":
        from annotate_anyone.pipeline.sources.s3_prefix import S3PrefixReader

        return S3PrefixReader(uri, **{k: v for k, v in options.items() if k in _S3_OPTIONS}, settings=settings)
    raise InvalidInput(f"unknown source kind {kind!r}; one of url_list, folder, s3_prefix")
