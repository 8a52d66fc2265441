"""Export a release from the database: shards, index, diff, tombstones, then the manifest (last).

Publishing is atomic in the only sense an object store allows: every other file is written first and
the manifest last, so a version exists iff its manifest exists. An export that dies half-way leaves
files under ``releases/<version>/`` that no reader looks at (no manifest); the next export of that
version, or :func:`discard_unpublished`, removes them. A published version is never written again.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone import logs
from annotate_anyone.catalog.models import Image, ImageStatus, Person
from annotate_anyone.catalog.takedown import tombstones
from annotate_anyone.errors import Conflict, InvalidInput
from annotate_anyone.release import paths
from annotate_anyone.release.diff import ReleaseDiff
from annotate_anyone.release.encode import ImageMode, LeftOut, SampleEncoder
from annotate_anyone.release.manifest import content_digest, load_manifest, published_versions, write_manifest
from annotate_anyone.release.models import Release
from annotate_anyone.release.samples import Sample, SampleReader
from annotate_anyone.release.selection import SampleFilter, parse_preset
from annotate_anyone.release.training_format import training_format
from annotate_anyone.release.writers import IndexWriter, Publisher, ShardWriter, put_small
from annotate_anyone.storage.base import ObjectStore
from annotate_anyone.storage.local import LocalStore

if TYPE_CHECKING:
    from annotate_anyone.annotation.settings import AnnotationConfig

DEFAULT_SHARD_BYTES = 1 << 30  # about 1 GB, WebDataset's usual shard size
LATEST = "latest"
ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class ExportStats:
    """Counts for the manifest, accumulated while samples stream past."""

    samples: int = 0
    persons: int = 0
    whole_images: int = 0
    labelled: int = 0
    with_parsing: int = 0
    images: set[str] = field(default_factory=set)
    by_origin: Counter[str] = field(default_factory=Counter)
    by_state: Counter[str] = field(default_factory=Counter)
    shot_types: Counter[str] = field(default_factory=Counter)
    model_versions: set[str] = field(default_factory=set)
    taxonomy_versions: set[str] = field(default_factory=set)
    left_out: Counter[str] = field(default_factory=Counter)

    def add(self, sample: Sample, has_parsing: bool) -> None:
        self.samples += 1
        self.images.add(sample.sha256)
        if sample.person is None:
            self.whole_images += 1
        else:
            self.persons += 1
            self.shot_types[sample.person.get("shot_type") or "unknown"] += 1
            if sample.person.get("parsing_model"):
                self.model_versions.add(sample.person["parsing_model"])
        self.with_parsing += has_parsing
        self.labelled += bool(sample.labels)
        for lb in sample.labels:
            self.by_origin[lb.origin] += 1
            self.by_state[lb.state] += 1
            if lb.model_version:
                self.model_versions.add(lb.model_version)
            self.taxonomy_versions.add(lb.taxonomy_version)

    def counts(self, shards: int, tombstoned: int) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "images": len(self.images),
            "persons": self.persons,
            "whole_images": self.whole_images,
            "labelled_samples": self.labelled,
            "with_parsing": self.with_parsing,
            "shards": shards,
            "attributes": sum(self.by_origin.values()),
            "attributes_by_origin": dict(sorted(self.by_origin.items())),
            "attributes_by_state": dict(sorted(self.by_state.items())),
            "shot_types": dict(sorted(self.shot_types.items())),
            "tombstones": tombstoned,
            "left_out": dict(sorted(self.left_out.items())),
        }


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run ``items`` ahead in a thread (database pages, file reads), ``depth`` items at most.

    The producer stops when the consumer does (also on an error); its own errors re-raise here.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            buffer.put(("error", exc))

    thread = threading.Thread(target=produce, name="release-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def discard_unpublished(store: ObjectStore, version: str) -> None:
    """Remove what an aborted export of ``version`` left behind; :class:`Conflict` if it is published."""
    if store.exists(paths.key(version, paths.MANIFEST)):
        raise Conflict(f"release {version} is already published and cannot be rewritten")
    if isinstance(store, LocalStore):
        shutil.rmtree(store.path(paths.prefix(version)), ignore_errors=True)
        return
    for key in list(store.list(paths.prefix(version))):
        store.delete(key)


def _read_parent(store: ObjectStore, version: str) -> list[tuple[str, str, str | None]]:
    import pyarrow.parquet as pq

    table = pq.read_table(
        io.BytesIO(store.get_bytes(paths.key(version, paths.INDEX))), columns=["key", "sha256", "labels"]
    )
    return list(zip(*(table.column(c).to_pylist() for c in ("key", "sha256", "labels")), strict=True))


def _removal_reasons(session: Session, rows: list[tuple[str, str]], taken: set[str]) -> dict[str, str]:
    """Why each parent sample is gone: takedown, image dropped or deleted, person removed, or re-filtered."""
    shas = sorted({sha for _k, sha in rows})
    images: dict[str, tuple[int, ImageStatus, str | None]] = {}
    persons: set[tuple[int, int]] = set()
    for i in range(0, len(shas), 500):
        chunk = shas[i : i + 500]
        for iid, sha, status, reason in session.execute(
            select(Image.id, Image.sha256, Image.status, Image.drop_reason).where(Image.sha256.in_(chunk))
        ):
            images[sha] = (iid, status, reason)
        ids = [v[0] for s, v in images.items() if s in chunk]
        persons |= set(
            map(tuple, session.execute(select(Person.image_id, Person.index).where(Person.image_id.in_(ids))))
        )
    out = {}
    for key, sha in rows:
        image = images.get(sha)
        if sha in taken or (image is not None and image[1] == ImageStatus.taken_down):
            out[key] = "takedown"
        elif image is None:
            out[key] = "image deleted"
        elif image[1] == ImageStatus.dropped:
            out[key] = f"image dropped ({image[2] or 'no reason'})"
        elif "_p" in key and (image[0], int(key.rsplit("_p", 1)[1])) not in persons:
            out[key] = "person removed"
        else:
            out[key] = "re-filtered"
    return out


def _engine_summary(session: Session, annotation: AnnotationConfig) -> dict[str, Any]:
    """Expected error and routing from the annotation engine's flywheel figures."""
    from annotate_anyone.annotation.flywheel import release_summary

    return dict(release_summary(session, config=annotation))


def export_release(
    session: Session,
    store: ObjectStore,
    *,
    version: str | None = None,
    parent: str | None = LATEST,
    preset: str = "all-accepted",
    filters: SampleFilter | dict[str, Any] | None = None,
    shard_size_bytes: int = DEFAULT_SHARD_BYTES,
    image_mode: str = "original",
    expected_error_rate: float | dict[str, float] | None = None,
    routing: dict[str, Any] | None = None,
    annotation: AnnotationConfig | None = None,
    progress: ProgressFn | None = None,
    job_id: int | None = None,
) -> Release:
    """Write release ``version`` (default: the next ``YYYY.MM.DD.N``) and add its Release row (not committed).

    ``parent``: ``"latest"`` (the newest published version, if any), a version, or ``None`` for none.
    ``expected_error_rate`` (of auto-accepted labels) and ``routing`` default to the annotation
    engine's flywheel figures (``annotation.flywheel.release_summary``, computed with ``annotation``: the
    settings' annotation section, required when either is not given). Raises :class:`Conflict` if the version exists.
    """
    if annotation is None and (expected_error_rate is None or routing is None):
        raise InvalidInput("export_release needs the annotation settings to compute expected_error_rate and routing")
    chosen = parse_preset(preset)
    sample_filter = SampleFilter.parse(filters)
    mode = ImageMode.parse(image_mode)
    fmt = training_format()
    created = datetime.now(UTC)
    published = published_versions(store)
    known = set(published) | set(session.scalars(select(Release.version)))
    version = paths.check_version(version) if version else paths.next_version(known, created.date())
    if version in known:
        raise Conflict(f"release {version} already exists; published versions are never rewritten")
    parent_version = (published[-1] if published else None) if parent == LATEST else parent
    if parent_version is not None:
        load_manifest(store, parent_version)  # NotFound if the parent is not published
    discard_unpublished(store, version)

    diff = ReleaseDiff.against(version, parent_version, _read_parent(store, parent_version) if parent_version else [])
    parent_hashes = {sha for sha, _labels in diff.parent_rows.values()}
    reader = SampleReader(session, chosen, sample_filter)
    total = reader.count()
    every = max(1, min(256, total // 100))  # report about every 1% of the samples
    if progress:
        progress(0, total)
    encoder = SampleEncoder(store, mode, fmt)
    stats = ExportStats()
    publisher = Publisher(store, version)
    shards = ShardWriter(publisher, shard_size_bytes)
    index = IndexWriter(publisher)
    seen = 0
    try:
        for sample, fetched in prefetch(((s, encoder.fetch(s)) for s in reader), depth=32):
            seen += 1
            try:
                members, row = encoder.encode(sample, fetched)
            except LeftOut as out:
                stats.left_out[out.reason] += 1
            else:
                row["shard"] = shards.write(sample.key, members)
                index.add(row)
                diff.see(sample.key, sample.sha256, row["labels"])
                stats.add(sample, "parsing.png" in members)
            if progress and seen % every == 0:
                progress(seen, max(total, seen))
        shard_files = shards.close()
        index_file = index.close()
        tomb = tombstones(session, parent_hashes)
        diff.finish(lambda rows: _removal_reasons(session, rows, {t["sha256"] for t in tomb}))
        files = [
            index_file,
            put_small(publisher, paths.CHANGES_JSON, _json(diff.as_dict())),
            put_small(publisher, paths.CHANGES_MD, diff.markdown().encode()),
            put_small(publisher, paths.TOMBSTONES, _json({"version": version, "tombstones": tomb})),
        ]
        publisher.wait()
        needed = annotation is not None and (expected_error_rate is None or routing is None)
        engine = _engine_summary(session, annotation) if needed else {}
        error = expected_error_rate if expected_error_rate is not None else engine.get("expected_error_rate")
        manifest = {
            "format": paths.FORMAT,
            "version": version,
            "parent": parent_version,
            "created_at": created.isoformat(),
            "job_id": job_id,
            "taxonomy_version": fmt.version,
            "label_taxonomy_versions": sorted(stats.taxonomy_versions),
            "model_versions": sorted(stats.model_versions),
            "selection": {"preset": chosen.describe(), "filter": sample_filter.describe()},
            "routing": routing if routing is not None else engine.get("routing"),
            "image_mode": mode.describe(),
            "shard_size_bytes": shard_size_bytes,
            "counts": stats.counts(len(shard_files), len(tomb)),
            "changes": diff.summary(),
            "expected_error": {
                "auto_accepted": error,
                "auto_accepted_labels": stats.by_state.get("auto_accepted", 0),
                "source": "parameter"
                if expected_error_rate is not None
                else ("calibration" if error is not None else None),
            },
            "shards": [f.as_dict() for f in shard_files],
            "files": [f.as_dict() for f in files],
            "digest": content_digest([*shard_files, *files]),
        }
        if store.exists(paths.key(version, paths.MANIFEST)):
            raise Conflict(f"release {version} was published by another export meanwhile")
        manifest_key = write_manifest(store, version, manifest)
    except BaseException:
        shards.abort()
        index.abort()
        raise
    finally:
        publisher.close()
    if progress:
        progress(seen, seen)
    release = Release(
        version=version,
        parent_version=parent_version,
        manifest_key=manifest_key,
        digest=manifest["digest"],
        counts=manifest["counts"],
        job_id=job_id,
    )
    session.add(release)
    session.flush()
    logs.event(
        logging.getLogger(__name__),
        "release.published",
        version=version,
        parent=parent_version,
        digest=manifest["digest"],
        samples=manifest["counts"].get("samples") if isinstance(manifest["counts"], dict) else None,
    )
    return release


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode()
