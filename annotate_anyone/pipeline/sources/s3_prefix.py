"""Objects under an S3 prefix, listed with boto3's paginated ListObjectsV2.

Two ways to know what is new (the ``order`` option; the caller also skips URIs it already has):

* ``modified`` (default): a high-water mark over ``LastModified``, like the folder reader's:
  ``{"mark_ns": t, "at_mark": [keys at exactly t]}``. Every re-scan lists the whole prefix, so an
  object is found whatever its key; new objects come in ``(LastModified, key)`` order.
* ``key``: ``{"last_key": key}``, listing only keys after it (``StartAfter``): O(new objects) per
  re-scan, but an object whose key sorts before the last one is never seen. For append-only layouts
  (date- or counter-prefixed keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from annotate_anyone.errors import ConfigError, InvalidInput
from annotate_anyone.pipeline.sources.base import IMAGE_EXTENSIONS, SourceItem, SourceReader
from annotate_anyone.settings import Settings


class S3PrefixReader(SourceReader):
    """Image objects under ``s3://bucket/prefix``."""

    def __init__(
        self,
        uri: str,
        *,
        extensions: list[str] | None = None,
        settings: Settings | None = None,
        client: Any = None,
        page_size: int = 1000,
        order: str = "modified",
    ) -> None:
        if order not in ("modified", "key"):
            raise InvalidInput(f"order must be 'modified' or 'key', not {order!r}")
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInput(f"not an s3://bucket/prefix URI: {uri}")
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        self.extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions or IMAGE_EXTENSIONS}
        self.settings = settings
        self._client = client
        self.page_size = page_size
        self.order = order

    @property
    def client(self) -> Any:
        if self._client is None:
            from annotate_anyone.pipeline.fetch import make_s3_client

            if self.settings is None:
                raise ConfigError("an s3_prefix source needs the settings (S3 endpoint and credentials) or a client")
            self._client = make_s3_client(self.settings)
        return self._client

    def _objects(self, start_after: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        pages = self.client.get_paginator("list_objects_v2").paginate(
            **kwargs, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            yield from page.get("Contents", [])

    def _wanted(self, key: str) -> bool:
        return not key.endswith("/") and "." + key.rsplit(".", 1)[-1].lower() in self.extensions

    def _item(self, obj: dict[str, Any]) -> SourceItem:
        key = obj["Key"]
        meta = {"key": key, "size": obj.get("Size"), "etag": str(obj.get("ETag", "")).strip('"')}
        return SourceItem(uri=f"s3://{self.bucket}/{key}", meta=meta)

    def scan(self, cursor: dict[str, Any] | None = None, limit: int | None = None) -> tuple[list[SourceItem], dict]:
        if self.order == "key":
            return self._scan_by_key(cursor, limit)
        mark = int((cursor or {}).get("mark_ns", -1))
        at_mark = set((cursor or {}).get("at_mark", []))
        fresh: list[tuple[int, str, dict[str, Any]]] = []
        for obj in self._objects():
            key = obj["Key"]
            if not self._wanted(key):
                continue
            modified = obj.get("LastModified")
            t = int(modified.timestamp() * 1_000_000) * 1000 if modified is not None else 0
            if t > mark or (t == mark and key not in at_mark):
                fresh.append((t, key, obj))
        fresh.sort(key=lambda row: row[:2])
        if limit is not None:
            fresh = fresh[:limit]
        if fresh:
            new_mark = fresh[-1][0]
            same = {key for t, key, _ in fresh if t == new_mark}
            at_mark = (at_mark | same) if new_mark == mark else same
            mark = new_mark
        return [self._item(obj) for _, _, obj in fresh], {"mark_ns": mark, "at_mark": sorted(at_mark)}

    def _scan_by_key(self, cursor: dict[str, Any] | None, limit: int | None) -> tuple[list[SourceItem], dict]:
        last_key = (cursor or {}).get("last_key")
        items: list[SourceItem] = []
        for obj in self._objects(start_after=last_key):
            last_key = obj["Key"]
            if not self._wanted(last_key):
                continue
            items.append(self._item(obj))
            if limit is not None and len(items) >= limit:
                break
        return items, ({"last_key": last_key} if last_key else dict(cursor or {}))
