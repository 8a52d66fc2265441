"""Releases on a real S3 server (SeaweedFS): export, verify, crash safety, presigned downloads, the loader."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import httpx
import pytest

from annotate_anyone.release import paths
from annotate_anyone.release.manifest import load_manifest, published_versions
from annotate_anyone.release.service import file_url
from annotate_anyone.release.verify import verify_release
from annotate_anyone.settings import get_settings
from annotate_anyone.storage.s3 import S3Store
from tests.unit.test_release_factories import export, make_world, many

pytestmark = pytest.mark.services


@pytest.fixture
def s3_world(s3_server, tmp_path: Path):
    bucket = s3_server.new_bucket("aa-release")
    store = S3Store(
        bucket,
        "pool",
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    w = make_world(tmp_path, store=store)
    yield w, s3_server, bucket
    w.session.close()


def test_release_on_s3(s3_world, monkeypatch: pytest.MonkeyPatch) -> None:
    w, server, bucket = s3_world
    many(w, 11)

    class Boom(RuntimeError):
        pass

    def crash(done: int, total: int) -> None:
        if done:
            raise Boom("killed")

    with pytest.raises(Boom):
        export(w, version="s1", shard_size_bytes=8_000, progress=crash)
    w.session.rollback()
    assert published_versions(w.store) == []

    release = export(w, version="s1", shard_size_bytes=8_000)
    w.session.commit()
    assert published_versions(w.store) == ["s1"]
    left_out = release.counts["left_out"]
    # the world's persons without a parsing map (half of ``many``'s) are left out with their reason
    assert left_out.get("export:no_parsing", 0) >= 5
    assert release.counts["samples"] + sum(left_out.values()) == 16
    manifest = load_manifest(w.store, "s1")
    assert len(manifest["shards"]) > 2
    assert verify_release(w.store, "s1", expected_digest=release.digest).ok

    # presigned URLs: what trainers (and the API) hand out
    shard = manifest["shards"][0]
    url = file_url(w.store, "s1", shard["name"])
    assert url is not None and url.startswith(server.endpoint_url)
    body = httpx.get(url).content
    assert hashlib.sha256(body).hexdigest() == shard["sha256"]

    # the loader, by s3:// URI with the endpoint from settings, over two DataLoader workers
    for name, value in server.env(bucket, "pool").items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from torch.utils.data import DataLoader

    from annotate_anyone.datasets import ReleaseDataset, open_release

    opened = open_release(f"s3://{bucket}/pool", "s1")
    pickle.loads(pickle.dumps(opened))  # workers started with spawn get their own S3 client
    keys = [s["__key__"] for s in DataLoader(ReleaseDataset(opened, decode="raw"), batch_size=None, num_workers=2)]
    assert sorted(keys) == sorted(opened.index(["key"]).column("key").to_pylist())

    # a tampered shard fails verify
    key = paths.key("s1", shard["name"])
    data = bytearray(w.store.get_bytes(key))
    data[600] ^= 0xFF
    w.store.put_bytes(key, bytes(data))
    report = verify_release(w.store, "s1")
    assert not report.ok and any("sha256" in e for e in report.errors)
    assert json.loads(w.store.get_bytes(paths.key("s1", paths.TOMBSTONES)))["tombstones"] == []
