"""The source-reader contract: list what is new since a cursor, without touching the database."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif", ".jfif"}
)


@dataclass(slots=True)
class SourceItem:
    """One listed item: where its bytes are (``uri``) and what the source says about it (``meta``)."""

    uri: str
    meta: dict[str, Any] = field(default_factory=dict)


class SourceReader(ABC):
    """Lists a source's items. ``scan(cursor)`` returns the items new since ``cursor`` and the cursor to
    store for next time; ``scan(None)`` lists from the start. With ``limit``, at most that many items
    come back and the cursor stops right after the last one, so a later scan continues from there."""

    @abstractmethod
    def scan(self, cursor: dict[str, Any] | None = None, limit: int | None = None) -> tuple[list[SourceItem], dict]:
        """Items new since ``cursor`` and the new cursor (JSON-serialisable)."""


def json_safe(value: Any) -> Any:
    """A value as JSON can hold it (metadata columns come from CSV, JSON and parquet alike)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return None
    return str(value)
