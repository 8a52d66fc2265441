"""Object store on a local directory (the embedded default)."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from annotate_anyone.errors import NotFound, StorageError
from annotate_anyone.storage.base import CHUNK, ObjectStore

# The default of ``Settings.store_unsynced_prefixes`` (content-addressed originals), for a store built without settings.
UNSYNCED_PREFIXES = ("originals/",)


class LocalStore(ObjectStore):
    """Objects are files under ``root``; writes go to a temp file in the same folder, then rename.

    Every write is atomic (a reader sees the old object, or the new one whole) and, by default,
    durable: the temp file is fsync'ed before the rename. Keys under ``unsynced_prefixes`` (``open_store``
    passes the ``store_unsynced_prefixes`` setting; default ``originals/``) skip that fsync. Those are content-addressed
    originals: each is verifiable against the sha256 in its key and image row, re-fetchable from the
    image's ``source_uri``, and a torn one is rewritten when its bytes come again (the store stage
    compares sizes). A per-object fsync there cost more than the decode of the image on a busy disk;
    release files, manifests and every other key keep it.
    """

    def __init__(self, root: str | Path, *, unsynced_prefixes: Sequence[str] | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)
        if unsynced_prefixes is None:
            unsynced_prefixes = UNSYNCED_PREFIXES
        self.unsynced_prefixes = tuple(p.rstrip("/") + "/" for p in unsynced_prefixes if p.strip("/"))

    def path(self, key: str) -> Path:
        """The file of ``key``. Keys are checked lexically (no absolute path, no ``..`` out of the root):
        a realpath per call cost more than the write itself; the store's own folders hold no symlinks."""
        norm = posixpath.normpath(key.replace(os.sep, "/")) if key else "."
        if norm == ".." or norm.startswith(("/", "../")):
            raise StorageError(f"key escapes the store: {key!r}")
        return self.root if norm == "." else self.root / norm

    def durable(self, key: str) -> bool:
        """Whether a write of ``key`` is fsync'ed before it becomes visible."""
        return not key.startswith(self.unsynced_prefixes)

    def _atomic_write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                if self.durable(key):
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._atomic_write(key, lambda f: f.write(data))

    def put_file(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        self._atomic_write(key, lambda f: shutil.copyfileobj(fileobj, f, CHUNK))

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"no object {key!r}") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key!r}") from exc

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), base).replace(os.sep, "/")
                if rel.startswith(prefix):
                    keys.append(rel)
        yield from sorted(keys)
