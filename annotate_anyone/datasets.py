"""The trainers' loader: open a release by URI and version, verify it, iterate it as a PyTorch ``IterableDataset``.

```python
from annotate_anyone.datasets import ReleaseDataset, open_release

release = open_release("s3://bucket/prefix", "2026.11.24.1")  # or a local store folder; verified
dataset = ReleaseDataset(release, seed=0, transform=my_transform)
for epoch in range(epochs):
    dataset.set_epoch(epoch)  # like DistributedSampler.set_epoch
    for batch in DataLoader(dataset, batch_size=32, num_workers=4):
        dataset.record(batch)  # only needed with num_workers > 0, for state_dict()
        ...
    checkpoint["data"] = dataset.state_dict()  # resumable mid-epoch: load_state_dict() then iterate
```

How an epoch is split (every sample exactly once per epoch across all ranks and workers):

1. the shard order is shuffled with ``(seed, epoch)``;
2. the samples, in that shard order, form one sequence of N; the ``C = world_size * num_workers``
   consumers (consumer ``rank * num_workers + worker``) each take a contiguous range of about N/C,
   so each reads only about 1/C of the bytes;
3. each consumer shuffles its range in windows of ``shuffle_window`` consecutive samples, with a
   permutation drawn from ``(seed, epoch, consumer, window)``: deterministic, independent of timing.

Resuming: a consumer's output order is a pure function of the plan, so the state is just how many
samples each consumer delivered. ``state_dict()`` records it (counted in-process with
``num_workers=0``; from ``record(batch)`` otherwise, since worker processes cannot report back), and
after ``load_state_dict`` each consumer skips what it delivered, without decoding it. Resume with the
same world size and number of workers.

A release laid out on disk (``release materialize``'s folder, or any CosmicMan-HQ style parquet index with
the data root its paths resolve under) opens as a :class:`LocalRelease`: its rows, images and parsing maps by
position, which is how the Daring trainer reads (``open_release(folder)``).

torch is imported only when :class:`ReleaseDataset` is first used; :class:`ReleaseStream` and
:func:`open_release` work without it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from annotate_anyone.errors import InvalidInput, NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import content_digest, load_manifest, manifest_files, published_versions
from annotate_anyone.release.reading import HashingReader, iter_samples
from annotate_anyone.storage.base import ObjectStore

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from annotate_anyone.settings import Settings

IMAGE_EXTS = ("jpg", "png", "webp")
DECODE_MODES = ("pil", "numpy", "raw")
TRAINING_COLUMNS = ("path", "segm_path", "height", "width", "person_type", "aa_text", "aa_ids")


@dataclass(frozen=True)
class Shard:
    name: str
    sha256: str
    size: int
    samples: int


@dataclass(frozen=True)
class Segment:
    """Samples ``[start, stop)`` of one shard, read by one consumer."""

    shard: Shard
    start: int
    stop: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.shard.samples


class OpenedRelease:
    """A published release: its manifest, shards and index, read from an object store."""

    def __init__(self, store: ObjectStore, version: str, manifest: dict[str, Any]) -> None:
        self.store = store
        self.version = version
        self.manifest = manifest
        self.shards = tuple(
            Shard(s["name"], s["sha256"], int(s["size"]), int(s["samples"])) for s in manifest["shards"]
        )
        self.check_shards = False  # hash whole shards as they stream (set by verify level "quick")

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def index(self, columns: list[str] | None = None) -> Any:
        """The parquet index as a ``pyarrow.Table``."""
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.store.get_bytes(paths.key(self.version, paths.INDEX))), columns=columns)

    def open_shard(self, shard: Shard) -> BinaryIO:
        return self.store.open(paths.key(self.version, shard.name))

    def shard_url(self, shard: Shard, expires: int = 3600) -> str | None:
        """A presigned URL (S3), or ``None`` (local: use :meth:`open_shard`)."""
        return self.store.url_for(paths.key(self.version, shard.name), expires=expires)

    def verify(self, level: str | bool = "quick") -> None:
        """``"full"``: every checksum (reads everything). ``"quick"``/True: the manifest's digest, the
        index checksum and every shard's size now, and each shard's sha256 whenever one is read whole.
        Raises :class:`InvalidInput` on any mismatch."""
        if level in (False, None, "none"):
            return
        if level == "full":
            from annotate_anyone.release.verify import verify_release

            report = verify_release(self.store, self.version)
            if not report.ok:
                raise InvalidInput(f"release {self.version} fails verification: {'; '.join(report.errors[:5])}")
            return
        if level not in (True, "quick"):
            raise InvalidInput(f"verify must be 'full', 'quick' or False, not {level!r}")
        if content_digest(manifest_files(self.manifest)) != self.manifest.get("digest"):
            raise InvalidInput(f"release {self.version}: manifest digest does not match its file list")
        entry = next(f for f in self.manifest["files"] if f["name"] == paths.INDEX)
        data = self.store.get_bytes(paths.key(self.version, paths.INDEX))
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InvalidInput(f"release {self.version}: index.parquet fails its checksum")
        for shard in self.shards:
            size = self.store.size(paths.key(self.version, shard.name))
            if size != shard.size:
                raise InvalidInput(f"release {self.version}: {shard.name} has {size} bytes, expected {shard.size}")
        self.check_shards = True

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for DataLoader workers started with spawn: boto3 clients are not, so the copy sent to a
        worker drops the store's cached clients and the worker builds its own (S3Store re-creates them lazily)."""
        state = self.__dict__.copy()
        if any(hasattr(self.store, name) for name in ("_client", "_clients")):
            store = copy.copy(self.store)
            for name, empty in (("_client", None), ("_clients", {})):
                if hasattr(store, name):
                    setattr(store, name, empty)
            state["store"] = store
        return state


def open_release(
    uri: str | Path | ObjectStore,
    version: str | None = None,
    *,
    data_root: Path | None = None,
    verify: str | bool = "quick",
    settings: Settings | None = None,
) -> OpenedRelease | LocalRelease:
    """Open ``version`` (default: the newest published) from a store URL (``s3://bucket/prefix`` or a
    local folder holding ``releases/``) or an :class:`ObjectStore`, and verify it (see :meth:`OpenedRelease.verify`).

    This is the trainers' entry point: an ``s3://`` URL takes its endpoint and credentials from ``settings``,
    else from the ``AA_S3_*`` environment (read here, once, as the CLI and the API do).

    A release laid out on disk (a ``.parquet`` index, or a folder of them that holds no ``releases/``) opens
    as a :class:`LocalRelease` with its paths under ``data_root`` (default: the index's folder); it was
    verified when it was materialized, and a ``version`` given must be the one its ``manifest.json`` names."""
    if isinstance(uri, str | Path) and not str(uri).startswith("s3://") and _laid_out(Path(uri)):
        release = LocalRelease.open(Path(uri), data_root)
        if version is not None and release.version not in (None, version):
            raise InvalidInput(f"{uri} holds release {release.version}, not {version}")
        return release
    if isinstance(uri, ObjectStore):
        store = uri
    else:
        from annotate_anyone.settings import get_settings
        from annotate_anyone.storage import open_store

        text = str(uri)
        if settings is None and text.startswith("s3://"):
            settings = get_settings()
        store = open_store(text, settings)
    if version is None:
        versions = published_versions(store)
        if not versions:
            raise NotFound(f"no published release in {store.url}")
        version = versions[-1]
    release = OpenedRelease(store, version, load_manifest(store, version))
    release.verify(verify)
    return release


def _laid_out(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and not (path / paths.RELEASES).is_dir())


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    """One index row of a laid-out release, ``aa_text`` (in release spelling) and ``aa_ids`` decoded."""

    path: str
    segm_path: str | None
    height: int
    width: int
    person_type: str | None
    aa_text: list[dict[str, Any] | None] | None
    aa_ids: list[list[int] | None] | None


class LocalRelease:
    """A release laid out on disk, read by position: the rows of its parquet index (the training columns,
    ``aa_text`` keys in either spelling read under the taxonomy's rule), and each row's image and parsing map
    under ``data_root``."""

    def __init__(self, parquet: Path | list[Path], data_root: Path) -> None:
        import pyarrow.parquet as pq

        files = [Path(parquet)] if isinstance(parquet, str | Path) else [Path(p) for p in parquet]
        if not files:
            raise NotFound("no parquet index given")
        self.data_root = Path(data_root)
        self.rows: list[ReleaseRow] = []
        for file in files:
            if not file.exists():
                raise NotFound(f"release index {file} does not exist")
            table = pq.read_table(file)
            missing = [c for c in TRAINING_COLUMNS if c not in table.column_names]
            if missing:
                raise InvalidInput(f"{file} lacks columns {missing}")
            self.rows.extend(_row(rec) for rec in table.select(list(TRAINING_COLUMNS)).to_pylist())
        manifest = self.data_root / "manifest.json"
        self.version: str | None = json.loads(manifest.read_text()).get("version") if manifest.is_file() else None

    @classmethod
    def open(cls, location: Path, data_root: Path | None = None) -> LocalRelease:
        """A parquet file (data root: its folder) or a folder holding ``*.parquet`` (searched recursively)."""
        location = Path(location)
        if location.is_dir():
            files = sorted(location.rglob("*.parquet"))
            if not files:
                raise NotFound(f"{location} holds neither a parquet index nor published releases")
            return cls(files, data_root or location)
        return cls(location, data_root or location.parent)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> ReleaseRow:
        return self.rows[index]

    def image(self, index: int) -> Image.Image:
        return _rgb(self.data_root / self.rows[index].path)

    def parsing(self, index: int) -> np.ndarray | None:
        segm = self.rows[index].segm_path
        return _label_map(self.data_root / segm) if segm else None


def _row(rec: dict[str, Any]) -> ReleaseRow:
    aa_text = _json_cell(rec["aa_text"])
    return ReleaseRow(
        path=rec["path"],
        segm_path=rec["segm_path"],
        height=int(rec["height"]),
        width=int(rec["width"]),
        person_type=rec["person_type"],
        aa_text=None if aa_text is None else release_aa_text(aa_text),
        aa_ids=_json_cell(rec["aa_ids"]),
    )


def _json_cell(value: Any) -> Any:
    """A JSON column's value decoded (null or NaN: ``None``)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return json.loads(value) if isinstance(value, str | bytes) else value


def _rgb(source: Path | BinaryIO) -> Image.Image:
    from PIL import Image

    with Image.open(source) as img:
        return img.convert("RGB")


def _label_map(source: Path | BinaryIO) -> np.ndarray:
    import numpy as np
    from PIL import Image

    with Image.open(source) as img:
        return np.asarray(img, dtype=np.uint8)


def epoch_order(shards: tuple[Shard, ...], *, seed: int, epoch: int, shuffle: bool) -> list[Shard]:
    order = list(shards)
    if shuffle:
        random.Random(f"shards:{seed}:{epoch}").shuffle(order)
    return order


def consumer_segments(order: list[Shard], consumer: int, consumers: int) -> list[Segment]:
    """The contiguous range of the epoch's sample sequence that ``consumer`` of ``consumers`` reads."""
    total = sum(s.samples for s in order)
    lo, hi = consumer * total // consumers, (consumer + 1) * total // consumers
    segments, offset = [], 0
    for shard in order:
        start, stop = max(lo, offset), min(hi, offset + shard.samples)
        if start < stop:
            segments.append(Segment(shard, start - offset, stop - offset))
        offset += shard.samples
    return segments


class ReleaseStream:
    """Deterministic, shardable, resumable iteration over a release (no torch needed)."""

    def __init__(
        self,
        release: OpenedRelease,
        *,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_window: int = 256,
        decode: str = "pil",
        transform: Callable[[dict[str, Any]], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if decode not in DECODE_MODES:
            raise InvalidInput(f"decode must be one of {DECODE_MODES}")
        self.release = release
        self.shuffle = shuffle
        self.seed = seed
        self.window = max(1, shuffle_window)
        self.decode = decode
        self.transform = transform
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self._consumers: int | None = None
        self._start: dict[int, int] = {}
        self._consumed: dict[int, int] = {}

    # -- where this process sits ---------------------------------------------------------------------
    def ranks(self) -> tuple[int, int]:
        """``(rank, world_size)``: as given, else from an initialised ``torch.distributed``, else (0, 1)."""
        if self._rank is not None and self._world is not None:
            return self._rank, self._world
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                return dist.get_rank(), dist.get_world_size()
        except ImportError:
            pass
        return self._rank or 0, self._world or 1

    @staticmethod
    def workers() -> tuple[int, int]:
        """``(worker id, number of workers)`` of the current DataLoader worker, (0, 1) outside one."""
        try:
            from torch.utils.data import get_worker_info
        except ImportError:
            return 0, 1
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    # -- epochs and state ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (forgets any mid-epoch position)."""
        self.epoch = int(epoch)
        self._start, self._consumed = {}, {}

    def record(self, batch: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Note samples as delivered: a sample, a list of samples, or a collated batch (dict of lists/tensors)."""
        if isinstance(batch, list):
            for sample in batch:
                self.record(sample)
            return
        consumers, indices, total = batch["__consumer__"], batch["__index__"], batch["__consumers__"]
        if not isinstance(consumers, (list, tuple)) and getattr(consumers, "ndim", 0) == 0:
            consumers, indices, total = [consumers], [indices], [total]
        self._consumers = _ints(total)[0]
        for c, i in zip(_ints(consumers), _ints(indices), strict=True):
            self._consumed[c] = max(self._consumed.get(c, 0), i + 1)

    def state_dict(self) -> dict[str, Any]:
        rank, world = self.ranks()
        return {
            "version": self.release.version,
            "seed": self.seed,
            "epoch": self.epoch,
            "shuffle": self.shuffle,
            "window": self.window,
            "consumers": self._consumers,
            "rank": rank,
            "consumed": {str(c): n for c, n in sorted(self._consumed.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, mine in (("version", self.release.version), ("seed", self.seed), ("shuffle", self.shuffle)):
            if state.get(name) != mine:
                raise InvalidInput(f"state is for {name}={state.get(name)!r}, this dataset has {mine!r}")
        self.epoch = int(state["epoch"])
        self.window = int(state["window"])
        self._consumers = state.get("consumers")
        self._start = {int(c): int(n) for c, n in state.get("consumed", {}).items()}
        self._consumed = dict(self._start)

    # -- iteration -----------------------------------------------------------------------------------
    def plan(self, consumer: int, consumers: int) -> list[Segment]:
        order = epoch_order(self.release.shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return consumer_segments(order, consumer, consumers)

    def __len__(self) -> int:
        """Samples this rank sees per epoch (over all its workers)."""
        rank, world = self.ranks()
        total = self.release.num_samples
        return (rank + 1) * total // world - rank * total // world

    def __iter__(self) -> Iterator[Any]:
        rank, world = self.ranks()
        worker, workers = self.workers()
        consumers = world * workers
        if self._start and self._consumers not in (None, consumers):
            raise InvalidInput(f"state was saved with {self._consumers} consumers; now {consumers} (ranks x workers)")
        self._consumers = consumers
        consumer = rank * workers + worker
        in_process = workers == 1
        for sample in self.iter_consumer(consumer, consumers, start=self._start.get(consumer, 0)):
            if in_process:
                self._consumed[consumer] = sample["__index__"] + 1
            yield self.transform(sample) if self.transform is not None else sample

    def iter_consumer(self, consumer: int, consumers: int, *, start: int = 0) -> Iterator[dict[str, Any]]:
        """The decoded samples of one consumer, from position ``start`` of its sequence."""
        segments = self.plan(consumer, consumers)
        total = sum(s.stop - s.start for s in segments)
        first_window = start // self.window
        stream = self._read(segments, skip=first_window * self.window)
        for w in range(first_window, (total + self.window - 1) // self.window):
            size = min(self.window, total - w * self.window)
            buffer = list(itertools.islice(stream, size))
            if len(buffer) < size:
                raise InvalidInput(f"release {self.release.version}: shards hold fewer samples than the manifest")
            order = list(range(size))
            if self.shuffle:
                random.Random(f"window:{self.seed}:{self.epoch}:{consumer}:{w}").shuffle(order)
            for j in range(start - w * self.window if w == first_window else 0, size):
                key, files = buffer[order[j]]
                sample = self._decode(key, files)
                sample.update(
                    __consumer__=consumer, __consumers__=consumers, __index__=w * self.window + j, __epoch__=self.epoch
                )
                yield sample
        for _ in stream:  # finish the last shard, so its checksum is checked
            pass

    def _read(self, segments: list[Segment], *, skip: int) -> Iterator[tuple[str, dict[str, bytes]]]:
        for seg in segments:
            n = seg.stop - seg.start
            if skip >= n:
                skip -= n
                continue
            stream = self.release.open_shard(seg.shard)
            try:
                hashed = HashingReader(stream) if (self.release.check_shards and seg.whole and not skip) else None
                yield from iter_samples(hashed or stream, skip=seg.start + skip, limit=n - skip)
                if hashed is not None:
                    hashed.drain()
                    if hashed.hexdigest() != seg.shard.sha256:
                        raise InvalidInput(f"release {self.release.version}: {seg.shard.name} fails its checksum")
            finally:
                stream.close()
            skip = 0

    def _decode(self, key: str, files: dict[str, bytes]) -> dict[str, Any]:
        ext = next((e for e in IMAGE_EXTS if e in files), None)
        doc = json.loads(files["json"]) if "json" in files else {}
        if "aa_text" in doc:  # either key spelling (releases before cm-1.0's release_keys used identifiers)
            doc["aa_text"] = release_aa_text(doc["aa_text"])
        sample: dict[str, Any] = {"__key__": key, "json": doc, "image": None, "parsing": None}
        image, parsing = (files[ext] if ext else None), files.get("parsing.png")
        if self.decode == "raw":
            sample.update(image=image, parsing=parsing)
            return sample
        import numpy as np

        if image is not None:
            rgb = _rgb(io.BytesIO(image))
            sample["image"] = np.asarray(rgb) if self.decode == "numpy" else rgb
        if parsing is not None:
            sample["parsing"] = _label_map(io.BytesIO(parsing))
        return sample


def release_aa_text(aa_text: list[dict[str, Any] | None] | None) -> list[dict[str, str] | None]:
    """A sample's ``aa_text`` as the current release format has it (key spellings, the taxonomy's rule)."""
    from annotate_anyone.annotation.taxonomy import load_taxonomy

    return load_taxonomy().release_aa_text(aa_text)


def _ints(values: Any) -> list[int]:
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _dataset_class() -> type:
    from torch.utils.data import IterableDataset

    class ReleaseDataset(ReleaseStream, IterableDataset):
        """:class:`ReleaseStream` as a ``torch.utils.data.IterableDataset`` (see the module docstring)."""

    ReleaseDataset.__module__ = __name__
    ReleaseDataset.__qualname__ = "ReleaseDataset"
    return ReleaseDataset


def __getattr__(name: str) -> Any:
    if name == "ReleaseDataset":  # built on first use, so importing this module does not import torch
        cls = _dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
