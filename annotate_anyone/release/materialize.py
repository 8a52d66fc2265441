"""``materialize``: lay a release out on disk so the index's ``path`` and ``segm_path`` resolve under it.

``DIR/index.parquet`` (CosmicMan's trainer reads it with ``DIR`` as data root), ``DIR/manifest.json``,
``DIR/images/..`` and ``DIR/parsing/..``. Every shard's sha256 is checked while it streams; a
mismatch raises and leaves no ``index.parquet`` in ``DIR`` (the index is written last).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from annotate_anyone.errors import InvalidInput
from annotate_anyone.release import layout
from annotate_anyone.release.manifest import load_manifest
from annotate_anyone.release.reading import HashingReader, iter_samples
from annotate_anyone.release.verify import IMAGE_EXTS
from annotate_anyone.storage.base import ObjectStore


def _write(path: Path, data: bytes) -> None:
    """Write atomically; an existing file of the same size is kept (re-runs are cheap)."""
    if path.exists() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def materialize(store: ObjectStore, version: str, dest: str | Path, *, with_json: bool = False) -> Path:
    """Extract release ``version`` into ``dest``; returns the path of ``dest/index.parquet``.

    ``with_json`` also writes each sample's full label document to ``dest/json/<key>.json``.
    """
    import hashlib

    import pyarrow.parquet as pq

    dest = Path(dest)
    manifest = load_manifest(store, version)
    index_entry = next(f for f in manifest["files"] if f["name"] == layout.INDEX)
    index_bytes = store.get_bytes(layout.key(version, layout.INDEX))
    if hashlib.sha256(index_bytes).hexdigest() != index_entry["sha256"]:
        raise InvalidInput(f"release {version}: index.parquet fails its checksum")
    table = pq.read_table(io.BytesIO(index_bytes), columns=["key", "path", "segm_path"])
    where = {
        k: (p, s) for k, p, s in zip(*(table.column(c).to_pylist() for c in ("key", "path", "segm_path")), strict=True)
    }
    for entry in manifest["shards"]:
        reader = HashingReader(store.open(layout.key(version, entry["name"])))
        for key, files in iter_samples(reader):
            if key not in where:
                raise InvalidInput(f"release {version}: {entry['name']} holds {key}, which the index lacks")
            path, segm_path = where[key]
            image = next((files[e] for e in files if e in IMAGE_EXTS), None)
            if image is not None:
                _write(dest / path, image)
            if segm_path and "parsing.png" in files:
                _write(dest / segm_path, files["parsing.png"])
            if with_json and "json" in files:
                _write(dest / "json" / f"{key}.json", files["json"])
        reader.drain()
        if reader.hexdigest() != entry["sha256"]:
            raise InvalidInput(f"release {version}: {entry['name']} fails its checksum; {dest} is incomplete")
    _write(dest / layout.MANIFEST, store.get_bytes(layout.key(version, layout.MANIFEST)))
    _write(dest / layout.INDEX, index_bytes)
    return dest / layout.INDEX
