"""Read-only views of a published release for the API and the dashboard: manifest, summary, changes, media types.

Which files of a release may be downloaded is decided once, in :func:`annotate_anyone.release.service.file_key`.
"""

from __future__ import annotations

import json
from typing import Any

from annotate_anyone.errors import NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import load_manifest, manifest_files
from annotate_anyone.storage import ObjectStore

MEDIA = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".tar": "application/x-tar",
}


def manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """The release's manifest (validated by annotate_anyone.release.manifest)."""
    return load_manifest(store, version)


def summary(manifest_: dict[str, Any]) -> dict[str, Any]:
    """The few fields a person reads first: counts, parent, digest, selection, size."""
    listed = manifest_files(manifest_)
    return {
        "version": manifest_.get("version"),
        "parent": manifest_.get("parent") or manifest_.get("parent_version"),
        "digest": manifest_.get("digest") or manifest_.get("content_digest"),
        "created_at": manifest_.get("created_at"),
        "counts": manifest_.get("counts", {}),
        "selection": manifest_.get("preset") or manifest_.get("selection"),
        "files": len(listed),
        "bytes": sum(int(f.get("size", 0)) for f in listed),
        "expected_label_error": manifest_.get("expected_label_error"),
    }


def changes(store: ObjectStore, version: str) -> dict[str, Any]:
    """``changes.json`` (the diff to the parent in label terms) plus ``CHANGES.md`` when present."""
    try:
        data = json.loads(store.get_bytes(paths.key(version, paths.CHANGES_JSON)))
    except NotFound as exc:
        raise NotFound(f"release {version!r} has no {paths.CHANGES_JSON}") from exc
    try:
        text = store.get_bytes(paths.key(version, paths.CHANGES_MD)).decode("utf-8", "replace")
    except NotFound:
        text = None
    return {"changes": data, "markdown": text}


def media_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return MEDIA.get(suffix, "application/octet-stream")
