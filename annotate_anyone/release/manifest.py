"""``manifest.json``: what a release is, and the digest that pins its content.

The content digest is the sha256 of the sorted ``name<TAB>sha256<TAB>size`` lines of every file the
manifest lists (shards, index, changes, tombstones). Two releases with the same files have the same
digest; any changed byte changes it. The manifest itself is written last: a version exists iff its
manifest exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from annotate_anyone.errors import InvalidInput, NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.writers import FileInfo
from annotate_anyone.storage.base import ObjectStore
from annotate_anyone.storage.local import LocalStore


def content_digest(files: Iterable[FileInfo | dict[str, Any]]) -> str:
    """sha256 over the sorted ``name, sha256, size`` of the release's files."""
    rows = sorted(
        (f.name, f.sha256, f.size) if isinstance(f, FileInfo) else (f["name"], f["sha256"], int(f["size"]))
        for f in files
    )
    h = hashlib.sha256()
    for name, sha, size in rows:
        h.update(f"{name}\t{sha}\t{size}\n".encode())
    return h.hexdigest()


def encode(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_manifest(store: ObjectStore, version: str, manifest: dict[str, Any]) -> str:
    """Publish the manifest (the atomic step that makes the version visible); returns its key."""
    key = paths.key(version, paths.MANIFEST)
    store.put_bytes(key, encode(manifest), content_type="application/json")
    return key


def load_manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """The manifest of a published version; :class:`NotFound` if the version is not published."""
    try:
        data = store.get_bytes(paths.key(version, paths.MANIFEST))
    except NotFound as exc:
        raise NotFound(f"release {version!r} is not published in {store.url}") from exc
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"release {version!r}: manifest.json is not valid JSON") from exc
    if manifest.get("format") != paths.FORMAT or manifest.get("version") != version:
        raise InvalidInput(f"release {version!r}: manifest has format/version {manifest.get('format')!r}")
    return manifest


def published_versions(store: ObjectStore) -> list[str]:
    """Published versions, oldest first (see :func:`annotate_anyone.release.paths.version_sort_key`)."""
    if isinstance(store, LocalStore):  # avoid walking the whole store
        found = [p.parent.name for p in store.path(paths.RELEASES).glob(f"*/{paths.MANIFEST}") if p.is_file()]
    else:
        found = []
        for key in store.list(paths.RELEASES + "/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == paths.MANIFEST:
                found.append(parts[1])
    return sorted(found, key=paths.version_sort_key)


def manifest_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file the manifest pins: shards, then the index and the other files."""
    return [*manifest["shards"], *manifest["files"]]
