"""Store stage: originals (and person masks) go to the object store, content-addressed."""

from __future__ import annotations

from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage
from annotate_anyone.storage import ObjectStore, open_store

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}


class StoreStage(Stage):
    """Writes the original bytes under ``originals/`` and each person's mask PNG under ``masks/``."""

    name = "store"

    def __init__(self, store_url: str | None = None) -> None:
        super().__init__()
        self.store_url = store_url
        self._store: ObjectStore | None = None

    def setup(self) -> None:
        self._store = open_store(self.store_url)

    def process(self, record: Record) -> Record:
        assert self._store is not None and record.data is not None
        ext = EXTENSIONS.get(record.format or "", "bin")
        record.sha256, record.storage_key = self._store.put_content(record.data, "originals", ext)
        for person in record.persons:
            mask = person.pop("mask_png", None)
            if mask:
                _, person["mask_key"] = self._store.put_content(mask, "masks", "png")
        return record
