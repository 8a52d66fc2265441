"""Read-only views of a published release for the API and the dashboard: manifest, changes, files."""

from __future__ import annotations

import json
from typing import Any

from annotate_anyone.errors import NotFound
from annotate_anyone.storage import ObjectStore

MEDIA = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".tar": "application/x-tar",
}


def manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """The release's manifest (validated by annotate_anyone.release.manifest)."""
    from annotate_anyone.release.manifest import load_manifest

    return load_manifest(store, version)


def files(manifest_: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file the manifest pins (shards first)."""
    return [*manifest_.get("shards", []), *manifest_.get("files", [])]


def summary(manifest_: dict[str, Any]) -> dict[str, Any]:
    """The few fields a person reads first: counts, parent, digest, selection, size."""
    listed = files(manifest_)
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


def _release_key(version: str, name: str) -> str:
    from annotate_anyone.release import layout

    return layout.key(version, name)


def changes(store: ObjectStore, version: str) -> dict[str, Any]:
    """``changes.json`` (the diff to the parent in label terms) plus ``CHANGES.md`` when present."""
    from annotate_anyone.release import layout

    try:
        data = json.loads(store.get_bytes(_release_key(version, layout.CHANGES_JSON)))
    except NotFound as exc:
        raise NotFound(f"release {version!r} has no {layout.CHANGES_JSON}") from exc
    try:
        text = store.get_bytes(_release_key(version, layout.CHANGES_MD)).decode("utf-8", "replace")
    except NotFound:
        text = None
    return {"changes": data, "markdown": text}


def file_key(store: ObjectStore, version: str, name: str) -> str:
    """The store key of ``name`` if the manifest lists it (nothing else can be downloaded)."""
    from annotate_anyone.release import layout

    if name == layout.MANIFEST:
        return _release_key(version, name)
    if name not in {f.get("name") for f in files(manifest(store, version))}:
        raise NotFound(f"release {version!r} lists no file {name!r}")
    return _release_key(version, name)


def media_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return MEDIA.get(suffix, "application/octet-stream")
