"""Objects under an S3 prefix, listed with boto3's paginated ListObjectsV2.

Cursor: ``{"last_key": key}``; a re-scan lists keys after it (``StartAfter``). S3 lists keys in
lexicographic order, so this picks up new objects whose keys sort after the last one (date- or
counter-prefixed keys, the usual layout for a growing bucket); the caller also skips known URIs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from annotate_anyone.errors import InvalidInput
from annotate_anyone.pipeline.sources.base import IMAGE_EXTENSIONS, SourceItem, SourceReader
from annotate_anyone.settings import Settings, get_settings


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
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInput(f"not an s3://bucket/prefix URI: {uri}")
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        self.extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions or IMAGE_EXTENSIONS}
        self.settings = settings
        self._client = client
        self.page_size = page_size

    @property
    def client(self) -> Any:
        if self._client is None:
            from annotate_anyone.pipeline.fetch import make_s3_client

            self._client = make_s3_client(self.settings or get_settings())
        return self._client

    def scan(self, cursor: dict[str, Any] | None = None, limit: int | None = None) -> tuple[list[SourceItem], dict]:
        last_key = (cursor or {}).get("last_key")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if last_key:
            kwargs["StartAfter"] = last_key
        pages = self.client.get_paginator("list_objects_v2").paginate(
            **kwargs, PaginationConfig={"PageSize": self.page_size}
        )
        items: list[SourceItem] = []
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                last_key = key
                if "." + key.rsplit(".", 1)[-1].lower() not in self.extensions or key.endswith("/"):
                    continue
                meta = {"key": key, "size": obj.get("Size"), "etag": str(obj.get("ETag", "")).strip('"')}
                items.append(SourceItem(uri=f"s3://{self.bucket}/{key}", meta=meta))
                if limit is not None and len(items) >= limit:
                    return items, {"last_key": last_key}
        return items, ({"last_key": last_key} if last_key else dict(cursor or {}))
