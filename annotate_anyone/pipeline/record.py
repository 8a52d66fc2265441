"""The one record type that moves between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Record:
    """One item flowing through a pipeline.

    ``item_id`` is the database id of the source item (what Celery tasks pass around); ``uri`` is
    where its bytes come from. Stages fill the other fields; a stage drops a record by setting
    ``drop_reason`` (use :meth:`drop`), after which later stages skip it.
    """

    item_id: int
    uri: str
    source_id: int | None = None
    local_root: str | None = None  # the folder a local ``uri`` must be read from within (its source's root)
    data: bytes | None = None  # original bytes, as fetched / read
    sha256: str | None = None
    phash: str | None = None  # 64-bit perceptual hash, 16 hex chars
    width: int | None = None
    height: int | None = None
    format: str | None = None  # decoded image format, e.g. "JPEG"
    image: Any = None  # decoded RGB PIL image (never persisted)
    views: dict[int, Any] = field(default_factory=dict)  # downscaled copies of ``image`` by long side, shared
    storage_key: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # blur, brisque, ...
    persons: list[dict[str, Any]] = field(default_factory=list)  # filled by the human filter
    meta: dict[str, Any] = field(default_factory=dict)  # caption, source columns, ...
    drop_reason: str | None = None
    error: str | None = None  # human-readable detail of the drop

    @property
    def dropped(self) -> bool:
        return self.drop_reason is not None

    def drop(self, reason: str, detail: str | None = None) -> Record:
        """Mark the record dropped with a short machine reason (``"decode:truncated"``) and detail."""
        self.drop_reason = reason
        self.error = detail
        return self

    def release_payload(self) -> None:
        """Free the bytes and decoded image once they are no longer needed (keeps memory flat)."""
        self.data = None
        self.image = None
        self.views = {}
