"""Writers: WebDataset tar shards and the parquet index, each staged locally and published to the store.

Files are written to a local staging file while their sha256 and size are computed on the fly, then
moved into the store (a rename on a local store, an upload on S3: in a background thread, so the next
shard is written while the previous one uploads).
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import shutil
import tarfile
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from annotate_anyone.release import paths
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


class BackgroundFile:
    """Hashes and writes in a thread (both release the GIL), so encoding the next sample overlaps them."""

    def __init__(self, path: Path, depth: int = 64) -> None:
        self.path = path
        self.size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="release-shard-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self.path.open("wb", buffering=4 * MB) as f:
                while (chunk := self._queue.get()) is not None:
                    self._digest.update(chunk)
                    f.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread in write()/close()
            self._error = exc
            while self._queue.get() is not None:  # unblock the producer until it closes
                pass

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self.size += len(data)
        self._queue.put(data)

    def close(self) -> str:
        """Flush, close and return the sha256 hex digest."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()


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
            dest = self.store.path(paths.key(self.version, name))
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
        else:
            assert self.tmp_dir is not None
            fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, suffix=Path(name).suffix)
        os.close(fd)
        return Path(tmp)

    def publish(self, staged: Path, name: str) -> None:
        """Move a staged file into the store (asynchronously on S3; :meth:`wait` joins)."""
        key = paths.key(self.version, name)
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


def _tar_member(name: str, data: bytes) -> bytes:
    """One ustar member: header, data, NUL padding to the 512-byte block."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o644
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


class ShardWriter:
    """WebDataset tar shards of about ``target_bytes`` each: ``{key}.{ext}`` members, a sample never split.

    Members are serialised here (plain ustar, fixed times, the same bytes ``tarfile`` writes) and
    handed to a :class:`BackgroundFile`, which hashes and writes while the next sample is encoded.
    """

    def __init__(self, publisher: Publisher, target_bytes: int) -> None:
        self.publisher = publisher
        self.target = max(1, int(target_bytes))
        self.shards: list[FileInfo] = []
        self._file: BackgroundFile | None = None
        self._count = 0

    @property
    def current_name(self) -> str:
        return paths.shard_name(len(self.shards))

    def write(self, key: str, members: dict[str, bytes]) -> str:
        """Add one sample (``members``: extension -> bytes); returns the shard it went to."""
        data = b"".join(_tar_member(f"{key}.{ext}", blob) for ext, blob in members.items())
        if self._file is not None and self._file.size + len(data) > self.target:
            self._finish()
        if self._file is None:
            self._file = BackgroundFile(self.publisher.staging_path(self.current_name))
        self._file.write(data)
        self._count += 1
        return self.current_name

    def _finish(self) -> None:
        assert self._file is not None
        end = b"\0" * (2 * tarfile.BLOCKSIZE)  # end-of-archive, then pad to a whole record like tarfile
        self._file.write(end + b"\0" * (-(self._file.size + len(end)) % tarfile.RECORDSIZE))
        digest = self._file.close()
        name = self.current_name
        self.shards.append(FileInfo(name, digest, self._file.size, self._count))
        self.publisher.publish(self._file.path, name)
        self._file = None
        self._count = 0

    def close(self) -> list[FileInfo]:
        if self._file is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (after a failure)."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file.path.unlink(missing_ok=True)
                self._file = None


class IndexWriter:
    """The parquet index: streamed in row groups, with an explicit schema (JSON columns as strings)."""

    ROW_GROUP = 8192

    def __init__(self, publisher: Publisher, name: str = paths.INDEX) -> None:
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
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._pending = 0
        self._closed = False
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        for name, values in self._columns.items():
            values.append(row[name])
        self._pending += 1
        self.count += 1
        if self._pending >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            arrays = [self._pa.array(self._columns[f.name], type=f.type) for f in self.schema]
            self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self.schema))
            self._columns = {name: [] for name in self.schema.names}
            self._pending = 0

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
