"""The object-store boundary: one interface, a local-directory and an S3 implementation."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1024 * 1024


def content_key(digest: str, prefix: str = "originals", ext: str = "") -> str:
    """Content-addressed key: ``prefix/ab/cd/abcd....ext`` for a sha256 hex digest."""
    suffix = f".{ext.lstrip('.')}" if ext else ""
    return f"{prefix}/{digest[:2]}/{digest[2:4]}/{digest}{suffix}"


class ObjectStore(ABC):
    """Keys are ``/``-separated relative paths. Writes are atomic: a reader sees all or nothing."""

    url: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``data`` under ``key`` atomically (overwrites)."""

    @abstractmethod
    def put_file(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        """Stream a file-like object under ``key`` atomically (multipart for large objects on S3)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader; raises :class:`annotate_anyone.errors.NotFound` if missing."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; missing keys are not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """All keys under ``prefix``, in lexicographic order."""

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        """A presigned URL where the backend supports one, else ``None``."""
        return None

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def put_content(self, data: bytes, prefix: str = "originals", ext: str = "") -> tuple[str, str]:
        """Store ``data`` content-addressed; returns ``(sha256, key)``. Idempotent."""
        digest = hashlib.sha256(data).hexdigest()
        key = content_key(digest, prefix, ext)
        if not self.exists(key):
            self.put_bytes(key, data)
        return digest, key

    def sha256(self, key: str) -> str:
        """Stream the object and return its sha256 hex digest."""
        h = hashlib.sha256()
        with self.open(key) as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        return h.hexdigest()
