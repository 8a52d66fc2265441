"""Writers: WebDataset tar shards and the parquet index, each staged locally and published to the store.

Files are written to a local staging file while their sha256 and size are computed on the fly, then
moved into the store (a rename on a local store, an upload on S3: in a background thread, so the next
shard is written while the previous one uploads).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from annotate_anyone.release import layout
from annotate_anyone.storage.base import ObjectStore
from annotate_anyone.storage.local import LocalStore

MB = 1024 * 1024
TAR_MTIME = 0  # fixed member times: the same samples give byte-identical shards


@dataclass(frozen=True)
class FileInfo:
    """A published release file: name relative to the release folder, sha256, size, samples it holds."""

    name: str
    sha256: str
    size: int
    samples: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "size": self.size}
        if self.samples is not None:
            d["samples"] = self.samples
        return d


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)

    def tell(self) -> int:
        return self.size


class Publisher:
    """Stages files locally and moves them into ``releases/<version>/`` of the store."""

    def __init__(self, store: ObjectStore, version: str) -> None:
        self.store = store
        self.version = version
        self.local = isinstance(store, LocalStore)
        self.tmp_dir = None if self.local else Path(tempfile.mkdtemp(prefix="aa-release-"))
        self._pool = None if self.local else ThreadPoolExecutor(1, thread_name_prefix="release-upload")
        self._pending: list[Future[None]] = []

    def staging_path(self, name: str) -> Path:
        """A fresh local file to write ``name`` into (inside the store folder when the store is local)."""
        if isinstance(self.store, LocalStore):
            dest = self.store.path(layout.key(self.version, name))
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
        else:
            assert self.tmp_dir is not None
            fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, suffix=Path(name).suffix)
        os.close(fd)
        return Path(tmp)

    def publish(self, staged: Path, name: str) -> None:
        """Move a staged file into the store (asynchronously on S3; :meth:`wait` joins)."""
        key = layout.key(self.version, name)
        if isinstance(self.store, LocalStore):
            os.replace(staged, self.store.path(key))
            return
        self._raise_failed()
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._upload, staged, key))

    def _upload(self, staged: Path, key: str) -> None:
        try:
            with staged.open("rb") as f:
                self.store.put_file(key, f)
        finally:
            staged.unlink(missing_ok=True)

    def _raise_failed(self) -> None:
        for fut in [f for f in self._pending if f.done()]:
            self._pending.remove(fut)
            fut.result()

    def wait(self) -> None:
        """Block until every upload is done; re-raise the first failure."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    def close(self) -> None:
        """Stop the uploader and remove the staging folder (also after a failure)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


class ShardWriter:
    """WebDataset tar shards of about ``target_bytes`` each: ``{key}.{ext}`` members, a sample never split."""

    def __init__(self, publisher: Publisher, target_bytes: int) -> None:
        self.publisher = publisher
        self.target = max(1, int(target_bytes))
        self.shards: list[FileInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._sink: HashingWriter | None = None
        self._file: BinaryIO | None = None
        self._staged: Path | None = None
        self._count = 0

    @property
    def current_name(self) -> str:
        return layout.shard_name(len(self.shards))

    def write(self, key: str, members: dict[str, bytes]) -> str:
        """Add one sample (``members``: extension -> bytes); returns the shard it went to."""
        size = sum(512 + (len(b) + 511) // 512 * 512 for b in members.values())
        if self._tar is not None and self._sink is not None and self._sink.size + size > self.target:
            self._finish()
        if self._tar is None:
            self._open()
        assert self._tar is not None
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        return self.current_name

    def _open(self) -> None:
        self._staged = self.publisher.staging_path(self.current_name)
        self._file = self._staged.open("wb", buffering=4 * MB)
        self._sink = HashingWriter(self._file)
        self._tar = tarfile.open(fileobj=self._sink, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def _finish(self) -> None:
        assert self._tar is not None and self._sink is not None and self._file is not None and self._staged
        self._tar.close()
        self._file.close()
        name = self.current_name
        self.shards.append(FileInfo(name, self._sink.digest.hexdigest(), self._sink.size, self._count))
        self.publisher.publish(self._staged, name)
        self._tar = self._sink = self._file = self._staged = None
        self._count = 0

    def close(self) -> list[FileInfo]:
        if self._tar is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (after a failure)."""
        if self._file is not None:
            self._file.close()
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
        self._tar = self._sink = self._file = self._staged = None


class IndexWriter:
    """The parquet index: streamed in row groups, with an explicit schema (JSON columns as strings)."""

    ROW_GROUP = 8192

    def __init__(self, publisher: Publisher, name: str = layout.INDEX) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.publisher = publisher
        self.name = name
        self.schema = index_schema()
        self._pa = pa
        self._staged = publisher.staging_path(name)
        self._file = self._staged.open("wb", buffering=4 * MB)
        self._sink = HashingWriter(self._file)
        self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        self._closed = False
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> FileInfo:
        self._flush()
        self._writer.close()
        self._file.close()
        self._closed = True
        info = FileInfo(self.name, self._sink.digest.hexdigest(), self._sink.size, self.count)
        self.publisher.publish(self._staged, self.name)
        return info

    def abort(self) -> None:
        """Drop the index being written (after a failure)."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the export is failing already; the file is discarded
                pass
            self._file.close()
        self._staged.unlink(missing_ok=True)


def index_schema() -> Any:
    """CosmicMan's training columns first (their loader reads these unchanged), then ours."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("segm_path", pa.string()),
            ("height", pa.int32()),
            ("width", pa.int32()),
            ("person_type", pa.string()),
            ("aa_text", pa.string()),
            ("aa_ids", pa.string()),
            ("key", pa.string()),
            ("sha256", pa.string()),
            ("person_index", pa.int32()),
            ("caption", pa.string()),
            ("shard", pa.string()),
            ("source", pa.string()),
            ("labels", pa.string()),
            ("provenance", pa.string()),
        ]
    )


def put_small(publisher: Publisher, name: str, data: bytes) -> FileInfo:
    """Publish a small file (changes, tombstones) and describe it."""
    staged = publisher.staging_path(name)
    staged.write_bytes(data)
    publisher.publish(staged, name)
    return FileInfo(name, hashlib.sha256(data).hexdigest(), len(data))
