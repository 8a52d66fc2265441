"""URL lists in the formats img2dataset users have: CSV, TSV, JSONL, JSON, TXT and parquet.

Cursor: ``{"rows": n, "complete": bool, "sha256": digest, "size": bytes, "mtime_ns": t}`` after
reading ``n`` data rows. A re-scan of an unchanged file lists nothing (or continues a scan that
stopped at ``limit``); a file that only grew at the end (its first ``size``
bytes still hash to ``sha256``) resumes at row ``n``; any other change lists the file again from the
start (the caller already skips URIs it knows).

A list is a list of http(s) URLs; only a *local* list (the ``local`` option) may name files, absolute or
relative to the list's folder (they are read confined to the source's root: pipeline/sources/confine.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from annotate_anyone.errors import InvalidInput
from annotate_anyone.pipeline.sources.base import SourceItem, SourceReader, json_safe
from annotate_anyone.pipeline.sources.confine import is_local, local_path, real, within

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".txt": "txt", ".parquet": "parquet"}
APPENDABLE = {"csv", "tsv", "jsonl", "txt"}
CHUNK = 1024 * 1024


def _digest(path: Path, size: int | None = None) -> str:
    """sha256 of the file's first ``size`` bytes (all of it by default)."""
    h = hashlib.sha256()
    left = path.stat().st_size if size is None else size
    with path.open("rb") as f:
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


class UrlListReader(SourceReader):
    """Rows of a URL list; ``url_column`` holds the URL, ``caption_column`` (if present) the caption, and
    the other columns (or only ``meta_columns``) go into the item's metadata."""

    def __init__(
        self,
        path: str | Path,
        *,
        url_column: str = "url",
        caption_column: str | None = "caption",
        meta_columns: list[str] | None = None,
        format: str | None = None,
        local: bool = False,
        confine_to: str | None = None,
    ) -> None:
        self.path = Path(str(path).removeprefix("file://"))
        self.local = local
        self.confine_to = confine_to
        self.format = format or FORMATS.get(self.path.suffix.lower())
        if self.format not in FORMATS.values():
            raise InvalidInput(f"unknown URL list format for {self.path.name}; one of {sorted(set(FORMATS.values()))}")
        self.url_column = url_column
        self.caption_column = caption_column
        self.meta_columns = meta_columns

    def scan(self, cursor: dict[str, Any] | None = None, limit: int | None = None) -> tuple[list[SourceItem], dict]:
        if self.confine_to is not None:
            resolved = real(self.path)
            if not within(resolved, real(self.confine_to)):
                raise InvalidInput(f"URL list {self.path} resolves outside the source's root {self.confine_to}")
            self.path = resolved  # read what was checked, not a symlink that may change meanwhile
        if not self.path.is_file():
            raise InvalidInput(f"URL list not found: {self.path}")
        stat = self.path.stat()
        start = self._resume_row(cursor, stat.st_size, stat.st_mtime_ns)
        if start is None:
            return [], dict(cursor or {})
        items: list[SourceItem] = []
        rows = start
        for row in islice(self._rows(), start, None if limit is None else start + limit):
            rows += 1
            item = self._item(row, rows - 1)
            if item is not None:
                items.append(item)
        complete = limit is None or rows - start < limit
        new_cursor = {
            "rows": rows,
            "complete": complete,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _digest(self.path),
        }
        return items, new_cursor

    def _resume_row(self, cursor: dict[str, Any] | None, size: int, mtime_ns: int) -> int | None:
        """The row to start at, or ``None`` when there is nothing new."""
        if not cursor or "sha256" not in cursor:
            return 0
        rows = int(cursor.get("rows", 0))
        if size == cursor.get("size") and (
            mtime_ns == cursor.get("mtime_ns") or _digest(self.path) == cursor["sha256"]
        ):
            return None if cursor.get("complete", True) else rows  # unchanged (maybe touched)
        if self.format in APPENDABLE and size > cursor.get("size", 0):
            if _digest(self.path, cursor["size"]) == cursor["sha256"]:
                return rows  # appended: resume after the rows already listed
        return 0

    def _item(self, row: dict[str, Any], index: int) -> SourceItem | None:
        url = row.get(self.url_column)
        if not isinstance(url, str) or not url.strip():
            return None
        meta: dict[str, Any] = {"row": index}
        caption = row.get(self.caption_column) if self.caption_column else None
        if caption not in (None, ""):
            meta["caption"] = json_safe(caption)
        for key in self.meta_columns if self.meta_columns is not None else row:
            if key not in (self.url_column, self.caption_column) and key in row:
                meta[key] = json_safe(row[key])
        uri = url.strip()
        if self.local and is_local(uri):  # a file named relative to the list's folder
            uri = os.path.normpath(self.path.parent / local_path(uri))
        return SourceItem(uri=uri, meta=meta)

    def _rows(self) -> Iterator[dict[str, Any]]:
        if self.format == "parquet":
            yield from self._parquet_rows()
            return
        with self.path.open("r", encoding="utf-8", newline="") as f:
            if self.format in ("csv", "tsv"):
                yield from csv.DictReader(f, delimiter="\t" if self.format == "tsv" else ",")
            elif self.format == "jsonl":
                for line in f:
                    if line.strip():
                        yield self._as_row(json.loads(line))
            elif self.format == "txt":
                for line in f:
                    if line.strip() and not line.lstrip().startswith("#"):
                        yield {self.url_column: line.strip()}
            else:
                for value in json.load(io.StringIO(f.read())):
                    yield self._as_row(value)

    def _as_row(self, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {self.url_column: value}

    def _parquet_rows(self) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(self.path)
        if self.url_column not in parquet.schema_arrow.names:
            raise InvalidInput(f"{self.path.name} has no column {self.url_column!r}")
        columns = None
        if self.meta_columns is not None:
            wanted = [self.url_column, self.caption_column, *self.meta_columns]
            columns = [c for c in dict.fromkeys(wanted) if c and c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=10_000, columns=columns):
            yield from batch.to_pylist()
