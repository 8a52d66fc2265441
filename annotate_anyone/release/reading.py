"""Reading shards back: a hashing stream and a tar sample iterator (used by verify, materialize, the loader)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1024 * 1024


class HashingReader(io.RawIOBase):
    """Wraps a stream; hashes and counts every byte read (``drain`` reads the rest)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        self.size += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self.source.read() if size is None or size < 0 else self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def split_name(name: str) -> tuple[str, str]:
    """WebDataset convention: ``dir/key.ext.ext2`` -> (``key``, ``ext.ext2``)."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def iter_members(stream: BinaryIO, *, with_data: bool = True) -> Iterator[tuple[str, str, bytes | None]]:
    """``(key, ext, data)`` for every regular member of a tar stream, in order (``data`` None if not wanted)."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, ext = split_name(info.name)
            data = None
            if with_data:
                f = tar.extractfile(info)
                data = f.read() if f is not None else b""
            yield key, ext, data


def iter_samples(
    stream: BinaryIO, *, skip: int = 0, limit: int | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group consecutive members by key: ``(key, {ext: bytes})`` (the WebDataset sample layout).

    The first ``skip`` samples are passed over without reading their data into memory; at most
    ``limit`` samples are yielded (the stream is left where they end).
    """
    if limit == 0:
        return
    current: str | None = None
    files: dict[str, bytes] = {}
    seen = 0  # samples started so far
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, ext = split_name(info.name)
            if key != current:
                if current is not None and seen > skip:
                    yield current, files
                    if limit is not None and seen - skip >= limit:
                        return
                current, files = key, {}
                seen += 1
            if seen > skip:
                f = tar.extractfile(info)
                files[ext] = f.read() if f is not None else b""
    if current is not None and seen > skip and (limit is None or seen - skip <= limit):
        yield current, files
