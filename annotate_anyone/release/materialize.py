"""``materialize``: lay a release out on disk so the index's ``path`` and ``segm_path`` resolve under it.

Two layouts, both with ``DIR`` as the data root (``DIR/images/..``, ``DIR/parsing/..``,
``DIR/manifest.json``):

* ``annotate-anyone`` (default): ``DIR/index.parquet``, the release's index unchanged (our trainer
  and loader read it);
* ``cosmicman``: what CosmicMan's own trainer reads, ``--dataset DIR/label`` (a folder holding only
  ``annotate-anyone_0_<version>.parquet``: their loader lists every file there, sorts by the integer
  after the first ``_`` and reads the first three) and ``--train_data_root DIR``. Its rows carry
  the training columns; an older release's rows are brought to the current format on the way
  (``aa_text`` keys in release spelling under the taxonomy's rule, 20-entry lists), and a row their
  loader would fail on (no parsing map, no shot type, a map with ids outside 0..17) is left out and
  counted.

Parsing maps are written as palette PNGs (older releases stored greyscale ones) in both layouts.
Every shard's sha256 is checked while it streams; a mismatch raises and leaves no index in ``DIR``
(the index is written last).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotate_anyone.errors import Conflict, InvalidInput
from annotate_anyone.release import paths
from annotate_anyone.release.encode import palette_parsing
from annotate_anyone.release.manifest import load_manifest
from annotate_anyone.release.reading import HashingReader, iter_samples
from annotate_anyone.release.verify import IMAGE_EXTS
from annotate_anyone.storage.base import ObjectStore

LAYOUTS = ("annotate-anyone", "cosmicman")
COSMICMAN_DATASET = "label"  # --dataset DIR/label, as CosmicMan's train_sdxl.sh names it
COSMICMAN_PREFIX = "annotate-anyone"
TRAINING_COLUMNS = ("path", "segm_path", "height", "width", "person_type", "aa_text", "aa_ids")
EXTRA_COLUMNS = ("key", "sha256", "caption")


def cosmicman_file_name(version: str) -> str:
    """``<prefix>_<n>_<version>.parquet``: their loader parses the text between the first two ``_`` as an int."""
    return f"{COSMICMAN_PREFIX}_0_{version}.parquet"


@dataclass
class CosmicmanLayout:
    """Where a ``cosmicman`` materialization put things, and what it left out."""

    data_root: Path
    dataset: Path
    rows: int
    left_out: dict[str, int] = field(default_factory=dict)

    def train_args(self) -> str:
        return f"--dataset={self.dataset} --train_data_root={self.data_root}"


def _write(path: Path, data: bytes) -> None:
    """Write atomically; an existing file of the same size is kept (re-runs are cheap)."""
    if path.exists() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _index(store: ObjectStore, version: str, manifest: dict[str, Any]) -> bytes:
    import hashlib

    entry = next(f for f in manifest["files"] if f["name"] == paths.INDEX)
    data = store.get_bytes(paths.key(version, paths.INDEX))
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidInput(f"release {version}: index.parquet fails its checksum")
    return data


def training_row(row: dict[str, Any], shot_types: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """A row of any release version in the current training format, or ``(None, reason)``."""
    from annotate_anyone.annotation.taxonomy import load_taxonomy

    if not row.get("segm_path"):
        return None, "materialize:no_parsing"
    if row.get("person_type") not in shot_types:
        return None, "materialize:no_shot_type"
    taxonomy = load_taxonomy()
    text = taxonomy.release_aa_text(json.loads(row["aa_text"]) if row.get("aa_text") else None)
    stored = json.loads(row["aa_ids"]) if row.get("aa_ids") else None
    fresh = taxonomy.aa_ids(text)
    ids = [None if t is None else (stored[i] if stored and stored[i] is not None else fresh[i]) for i, t in
           enumerate(text)]  # fmt: skip
    out = {c: row.get(c) for c in (*TRAINING_COLUMNS, *EXTRA_COLUMNS)}
    out.update(aa_text=json.dumps(text, ensure_ascii=False), aa_ids=json.dumps(ids))
    return out, None


def _extract(
    store: ObjectStore,
    version: str,
    manifest: dict[str, Any],
    dest: Path,
    where: dict[str, tuple[str, str | None]],
    *,
    with_json: bool,
    strict_parsing: bool,
) -> set[str]:
    """Write every indexed sample's image and parsing map under ``dest``; returns the keys whose parsing
    map could not be made a palette PNG (written as stored unless ``strict_parsing``)."""
    bad: set[str] = set()
    for entry in manifest["shards"]:
        reader = HashingReader(store.open(paths.key(version, entry["name"])))
        for key, files in iter_samples(reader):
            if key not in where:
                if strict_parsing:  # a left-out row: nothing to write
                    continue
                raise InvalidInput(f"release {version}: {entry['name']} holds {key}, which the index lacks")
            path, segm_path = where[key]
            if segm_path and "parsing.png" in files:
                try:
                    parsing = palette_parsing(files["parsing.png"])
                except (InvalidInput, OSError, ValueError):
                    bad.add(key)
                    if strict_parsing:
                        continue
                    parsing = files["parsing.png"]
                _write(dest / segm_path, parsing)
            image = next((files[e] for e in files if e in IMAGE_EXTS), None)
            if image is not None:
                _write(dest / path, image)
            if with_json and "json" in files:
                _write(dest / "json" / f"{key}.json", files["json"])
        reader.drain()
        if reader.hexdigest() != entry["sha256"]:
            raise InvalidInput(f"release {version}: {entry['name']} fails its checksum; {dest} is incomplete")
    return bad


def materialize(
    store: ObjectStore, version: str, dest: str | Path, *, with_json: bool = False, layout_name: str = LAYOUTS[0]
) -> Path:
    """Extract release ``version`` into ``dest``; returns ``dest/index.parquet`` (``annotate-anyone``
    layout) or the ``--dataset`` folder ``dest/label`` (``cosmicman`` layout, see :func:`materialize_cosmicman`).

    ``with_json`` also writes each sample's full label document to ``dest/json/<key>.json``.
    """
    if layout_name == "cosmicman":
        return materialize_cosmicman(store, version, dest, with_json=with_json).dataset
    if layout_name != LAYOUTS[0]:
        raise InvalidInput(f"unknown layout {layout_name!r}; expected one of {LAYOUTS}")
    import pyarrow.parquet as pq

    dest = Path(dest)
    manifest = load_manifest(store, version)
    index_bytes = _index(store, version, manifest)
    table = pq.read_table(io.BytesIO(index_bytes), columns=["key", "path", "segm_path"])
    where = {
        k: (p, s) for k, p, s in zip(*(table.column(c).to_pylist() for c in ("key", "path", "segm_path")), strict=True)
    }
    _extract(store, version, manifest, dest, where, with_json=with_json, strict_parsing=False)
    _write(dest / paths.MANIFEST, store.get_bytes(paths.key(version, paths.MANIFEST)))
    _write(dest / paths.INDEX, index_bytes)
    return dest / paths.INDEX


def materialize_cosmicman(
    store: ObjectStore, version: str, dest: str | Path, *, with_json: bool = False
) -> CosmicmanLayout:
    """Lay ``version`` out for CosmicMan's trainer: ``--dataset dest/label --train_data_root dest``.

    Raises :class:`Conflict` when ``dest/label`` holds anything else (their loader would read it too).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from annotate_anyone.annotation.taxonomy import load_taxonomy

    dest = Path(dest)
    dataset = dest / COSMICMAN_DATASET
    name = cosmicman_file_name(version)
    others = sorted(p.name for p in dataset.iterdir() if p.name != name) if dataset.is_dir() else []
    if others:
        raise Conflict(f"{dataset} holds {others[:3]}: CosmicMan's loader reads every file there; use a new folder")
    manifest = load_manifest(store, version)
    table = pq.read_table(io.BytesIO(_index(store, version, manifest)))
    shot_types = load_taxonomy().shot_types
    rows: dict[str, dict[str, Any]] = {}
    left_out: Counter[str] = Counter()
    for row in table.to_pylist():
        out, reason = training_row(row, shot_types)
        if out is None:
            left_out[reason or "materialize:invalid"] += 1
        else:
            rows[row["key"]] = out
    where = {k: (r["path"], r["segm_path"]) for k, r in rows.items()}
    for key in _extract(store, version, manifest, dest, where, with_json=with_json, strict_parsing=True):
        rows.pop(key)
        left_out["materialize:bad_parsing"] += 1
    schema = pa.schema(
        [("path", pa.string()), ("segm_path", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
         ("person_type", pa.string()), ("aa_text", pa.string()), ("aa_ids", pa.string()), ("key", pa.string()),
         ("sha256", pa.string()), ("caption", pa.string())]
    )  # fmt: skip
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(rows.values()), schema=schema), buf)
    _write(dest / paths.MANIFEST, store.get_bytes(paths.key(version, paths.MANIFEST)))
    _write(dataset / name, buf.getvalue())
    return CosmicmanLayout(data_root=dest, dataset=dataset, rows=len(rows), left_out=dict(sorted(left_out.items())))
