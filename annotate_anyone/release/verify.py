"""``verify_release``: every checksum and size in the manifest, the content digest, and index/shard agreement."""

from __future__ import annotations

import io
import tarfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from annotate_anyone.errors import InvalidInput, NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import content_digest, load_manifest, manifest_files
from annotate_anyone.release.reading import HashingReader, iter_members
from annotate_anyone.storage.base import ObjectStore

IMAGE_EXTS = {"jpg", "png", "webp"}


@dataclass
class VerifyReport:
    version: str
    ok: bool = True
    digest: str | None = None
    files_checked: int = 0
    bytes_checked: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_file(store: ObjectStore, version: str, entry: dict[str, Any], report: VerifyReport) -> HashingReader | None:
    key = paths.key(version, entry["name"])
    try:
        stream = store.open(key)
    except NotFound:
        report.fail(f"{entry['name']}: missing")
        return None
    return HashingReader(stream)


def _finish(entry: dict[str, Any], reader: HashingReader, report: VerifyReport) -> None:
    reader.drain()
    report.files_checked += 1
    report.bytes_checked += reader.size
    if reader.size != entry["size"]:
        report.fail(f"{entry['name']}: size {reader.size} != {entry['size']} in the manifest")
    if reader.hexdigest() != entry["sha256"]:
        report.fail(f"{entry['name']}: sha256 mismatch")


def verify_release(store: ObjectStore, version: str, *, expected_digest: str | None = None) -> VerifyReport:
    """Check a published release; ``expected_digest`` (e.g. the database's) must match if given.

    Raises :class:`NotFound` if the version is not published; every other problem is in the report.
    """
    import pyarrow.parquet as pq

    report = VerifyReport(version)
    try:
        manifest = load_manifest(store, version)
    except InvalidInput as exc:
        report.fail(str(exc))
        return report
    files = manifest_files(manifest)
    report.digest = content_digest(files)
    if report.digest != manifest.get("digest"):
        report.fail("content digest does not match the manifest's file list")
    if expected_digest is not None and expected_digest != manifest.get("digest"):
        report.fail(f"manifest digest {manifest.get('digest')} != expected {expected_digest}")

    expected: dict[str, dict[str, set[str]]] = defaultdict(dict)  # shard -> key -> required extensions
    index_entry = next((f for f in manifest["files"] if f["name"] == paths.INDEX), None)
    if index_entry is None:
        report.fail("the manifest lists no index")
    elif (reader := _check_file(store, version, index_entry, report)) is not None:
        data = reader.read()
        _finish(index_entry, reader, report)
        try:
            table = pq.read_table(io.BytesIO(data), columns=["key", "shard", "segm_path"])
        except Exception as exc:  # noqa: BLE001 - any parquet failure is a verification failure
            report.fail(f"{paths.INDEX}: unreadable ({exc})")
        else:
            report.samples = table.num_rows
            if table.num_rows != manifest["counts"]["samples"]:
                report.fail(f"index has {table.num_rows} rows, manifest counts {manifest['counts']['samples']}")
            for key, shard, segm in zip(
                *(table.column(c).to_pylist() for c in ("key", "shard", "segm_path")), strict=True
            ):
                expected[shard][key] = {"json"} | ({"parsing.png"} if segm else set())
    for entry in manifest["files"]:
        if entry["name"] != paths.INDEX and (reader := _check_file(store, version, entry, report)) is not None:
            _finish(entry, reader, report)
    for entry in manifest["shards"]:
        reader = _check_file(store, version, entry, report)
        if reader is None:
            continue
        found: dict[str, set[str]] = defaultdict(set)
        try:
            for key, ext, _ in iter_members(reader, with_data=False):
                found[key].add(ext)
        except tarfile.TarError as exc:
            report.fail(f"{entry['name']}: not a readable tar ({exc})")
        _finish(entry, reader, report)
        want = expected.pop(entry["name"], {})
        if set(found) != set(want):
            report.fail(f"{entry['name']}: holds {len(found)} samples, the index expects {len(want)}")
        for key, exts in want.items():
            have = found.get(key, set())
            if key in found and (not exts <= have or not have & IMAGE_EXTS):
                report.fail(f"{entry['name']}: sample {key} lacks {sorted(exts - have) or ['an image']}")
        if entry.get("samples") is not None and entry["samples"] != len(found):
            report.fail(f"{entry['name']}: {len(found)} samples, manifest says {entry['samples']}")
    for shard in expected:
        report.fail(f"index refers to shard {shard}, which the manifest does not list")
    return report
