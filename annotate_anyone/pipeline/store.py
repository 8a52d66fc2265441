"""Store stage: originals (and person masks) go to the object store, content-addressed."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from annotate_anyone.errors import NotFound
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage
from annotate_anyone.settings import Settings
from annotate_anyone.storage import LocalStore, ObjectStore, content_key, open_store

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}


class StoreStage(Stage):
    """Writes the original bytes under ``originals/`` and each person's mask PNG under ``masks/``.

    The key comes from the sha256 the decode stage already took (hashed here only when no stage did).
    An object already there with the same size is left alone; one of another size (a write torn by a
    crash, see :class:`~annotate_anyone.storage.local.LocalStore`) is rewritten.
    """

    name = "store"
    remote_concurrency = 8  # parallel writes to a network store (S3); a local directory gains nothing

    def __init__(self, store_url: str | None = None, settings: Settings | None = None) -> None:
        """``store_url`` (default ``settings.store_url``); ``settings`` are needed for S3 (see ``open_store``)."""
        super().__init__()
        self.store_url = store_url
        self.settings = settings
        self._store: ObjectStore | None = None

    def setup(self) -> None:
        self._store = open_store(self.store_url, self.settings)

    def _run(self, live: list[Record]) -> None:
        if isinstance(self._store, LocalStore) or len(live) < 2:
            super()._run(live)
            return
        with ThreadPoolExecutor(min(self.remote_concurrency, len(live)), thread_name_prefix="store") as pool:
            list(pool.map(lambda record: super(StoreStage, self)._run([record]), live))

    def process(self, record: Record) -> Record:
        assert self._store is not None and record.data is not None
        if record.sha256 is None:
            record.sha256 = hashlib.sha256(record.data).hexdigest()
        key = content_key(record.sha256, "originals", EXTENSIONS.get(record.format or "", "bin"))
        if self._stored_size(key) != len(record.data):
            self._store.put_bytes(key, record.data)
        record.storage_key = key
        for person in record.persons:
            mask = person.pop("mask_png", None)
            if mask:
                _, person["mask_key"] = self._store.put_content(mask, "masks", "png")
        return record

    def _stored_size(self, key: str) -> int | None:
        assert self._store is not None
        try:
            return self._store.size(key)
        except NotFound:
            return None
