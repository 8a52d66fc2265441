"""The object-store contract, run against a local directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import uuid
from pathlib import Path

import httpx
import pytest

from annotate_anyone.errors import ConfigError, NotFound, StorageError
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store
from annotate_anyone.storage.base import ObjectStore, content_key
from annotate_anyone.storage.local import LocalStore
from annotate_anyone.storage.s3 import S3Store

MB = 1024 * 1024
BIG = 17 * MB  # above the 8 MB multipart threshold: three parts


def s3_settings(server) -> Settings:
    return Settings(
        s3_endpoint_url=server.endpoint_url,
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
        s3_region=server.region,
    )


@pytest.fixture(scope="module")
def s3_bucket(s3_server) -> str:
    return s3_server.new_bucket("aa-storage")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store; the S3 one lives under its own prefix of a shared bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store.from_url(f"s3://{bucket}/run/{uuid.uuid4().hex}", s3_settings(server))


class FailingStream(io.RawIOBase):
    """A non-seekable stream that yields ``good`` bytes, then fails like a dropped connection."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray) -> int:
        if self.left <= 0:
            raise OSError("source stream broke")
        n = min(len(buf), self.left)
        buf[:n] = b"x" * n
        self.left -= n
        return n


def payload(size: int) -> bytes:
    return os.urandom(size)


# ---------------------------------------------------------------------------------------- contract


def test_put_and_get_bytes(store: ObjectStore) -> None:
    store.put_bytes("a/b/one.bin", b"first")
    assert store.get_bytes("a/b/one.bin") == b"first"
    store.put_bytes("a/b/one.bin", b"second, longer")
    assert store.get_bytes("a/b/one.bin") == b"second, longer"
    assert store.size("a/b/one.bin") == len(b"second, longer")
    assert store.exists("a/b/one.bin")


def test_put_file_large_and_streaming_read(store: ObjectStore) -> None:
    data = payload(BIG)
    store.put_file("big/blob.bin", io.BytesIO(data))
    assert store.size("big/blob.bin") == BIG
    digest = hashlib.sha256()
    chunks = 0
    with store.open("big/blob.bin") as f:
        while chunk := f.read(MB):
            assert len(chunk) <= MB
            digest.update(chunk)
            chunks += 1
    assert chunks >= BIG // MB
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert store.sha256("big/blob.bin") == hashlib.sha256(data).hexdigest()


def test_put_content_is_content_addressed_and_idempotent(store: ObjectStore) -> None:
    data = b"the same image bytes"
    digest, key = store.put_content(data, prefix="originals", ext="jpg")
    assert digest == hashlib.sha256(data).hexdigest()
    assert key == content_key(digest, "originals", "jpg") == f"originals/{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert store.put_content(data, prefix="originals", ext="jpg") == (digest, key)
    assert list(store.list("originals/")) == [key]
    assert store.get_bytes(key) == data


def test_missing_keys(store: ObjectStore) -> None:
    assert not store.exists("nope/missing.bin")
    with pytest.raises(NotFound):
        store.size("nope/missing.bin")
    with pytest.raises(NotFound):
        store.open("nope/missing.bin")
    with pytest.raises(NotFound):
        store.get_bytes("nope/missing.bin")
    store.delete("nope/missing.bin")  # deleting what is not there is not an error


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("x/keep.txt", b"1")
    store.put_bytes("x/drop.txt", b"2")
    store.delete("x/drop.txt")
    assert not store.exists("x/drop.txt")
    assert list(store.list()) == ["x/keep.txt"]


def test_list_by_prefix_in_order(store: ObjectStore) -> None:
    for key in ["b/4", "a/2", "ab/3", "a/1", "a/sub/5"]:
        store.put_bytes(key, key.encode())
    assert list(store.list()) == ["a/1", "a/2", "a/sub/5", "ab/3", "b/4"]
    assert list(store.list("a/")) == ["a/1", "a/2", "a/sub/5"]
    assert list(store.list("a")) == ["a/1", "a/2", "a/sub/5", "ab/3"]
    assert list(store.list("a/sub/")) == ["a/sub/5"]
    assert list(store.list("zzz")) == []


def test_keys_cannot_escape(store: ObjectStore, tmp_path: Path) -> None:
    for key in ["../outside.txt", "a/../../outside.txt", "/etc/outside.txt"]:
        with pytest.raises(StorageError):
            store.put_bytes(key, b"no")
    assert not (tmp_path / "outside.txt").exists()
    assert list(store.list()) == []


@pytest.mark.parametrize("size", [1 * MB, BIG], ids=["single-put", "multipart"])
def test_failed_put_file_leaves_nothing(store: ObjectStore, size: int) -> None:
    with pytest.raises(OSError, match="source stream broke"):
        store.put_file("broken/new.bin", FailingStream(size))
    assert not store.exists("broken/new.bin")
    assert list(store.list()) == []
    if isinstance(store, LocalStore):
        assert [p.name for p in store.root.rglob("*") if p.is_file()] == []  # no temp file left


def test_failed_overwrite_keeps_the_old_object(store: ObjectStore) -> None:
    store.put_bytes("doc.bin", b"version one")
    with pytest.raises(OSError):
        store.put_file("doc.bin", FailingStream(BIG))
    assert store.get_bytes("doc.bin") == b"version one"


# --------------------------------------------------------------------------------------- S3 only


@pytest.fixture
def s3_store(s3_server, s3_bucket: str) -> S3Store:
    return S3Store.from_url(f"s3://{s3_bucket}/only/{uuid.uuid4().hex}", s3_settings(s3_server))


def test_s3_presigned_url_fetches_the_bytes(s3_store: S3Store) -> None:
    data = payload(200_000)
    s3_store.put_bytes("img/photo.jpg", data, content_type="image/jpeg")
    url = s3_store.url_for("img/photo.jpg", expires=300)
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/jpeg"
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403


def test_s3_presigned_url_for_a_public_endpoint(s3_server, s3_store: S3Store) -> None:
    public = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    store = S3Store(
        s3_store.bucket,
        s3_store.prefix,
        endpoint_url=s3_server.endpoint_url,
        public_endpoint_url=public,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    store.put_bytes("seen-by-browsers.bin", b"pixels")
    url = store.url_for("seen-by-browsers.bin")
    assert url.startswith(public + "/")
    assert httpx.get(url).content == b"pixels"


def test_s3_large_put_file_is_multipart(s3_store: S3Store) -> None:
    s3_store.put_file("big.bin", io.BytesIO(payload(BIG)))
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=s3_store.key("big.bin"))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag names its part count


def test_s3_aborted_multipart_leaves_no_upload(s3_store: S3Store) -> None:
    with pytest.raises(OSError):
        s3_store.put_file("aborted.bin", FailingStream(BIG))
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket, Prefix=s3_store.key("aborted.bin"))
    assert uploads.get("Uploads", []) == []


def test_s3_keys_are_relative_to_the_prefix(s3_server, s3_store: S3Store) -> None:
    s3_store.put_bytes("k.txt", b"v")
    raw = s3_server.client().list_objects_v2(Bucket=s3_store.bucket, Prefix=s3_store.prefix + "/")
    assert [o["Key"] for o in raw["Contents"]] == [f"{s3_store.prefix}/k.txt"]
    assert list(s3_store.list()) == ["k.txt"]


def test_s3_create_bucket_option_and_bucket_root(s3_server) -> None:
    name = f"aa-created-{uuid.uuid4().hex[:10]}"
    store = S3Store.from_url(f"s3://{name}", s3_settings(s3_server), create_bucket=True)
    s3_server.client().head_bucket(Bucket=name)  # exists before anything is written
    store.ensure_bucket()  # idempotent
    store.put_bytes("top.txt", b"root level")
    assert list(store.list()) == ["top.txt"]
    assert store.url == f"s3://{name}"


def test_s3_open_store_from_settings(s3_server, s3_bucket: str) -> None:
    settings = s3_settings(s3_server).model_copy(update={"storage_url": f"s3://{s3_bucket}/via-settings"})
    store = open_store(settings=settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (s3_bucket, "via-settings")
    store.put_bytes("x", b"y")
    assert store.get_bytes("x") == b"y"


def test_s3_bad_credentials_are_a_storage_error_not_not_found(s3_server, s3_bucket: str) -> None:
    settings = s3_settings(s3_server).model_copy(update={"s3_secret_key": "wrong-secret"})
    store = S3Store.from_url(f"s3://{s3_bucket}/denied", settings)
    with pytest.raises(StorageError) as info:
        store.put_bytes("x", b"y")
    assert not isinstance(info.value, NotFound)


def _write_from_child(store: S3Store) -> None:
    store.put_bytes("from-child", b"2")
    if store.get_bytes("before-fork") != b"1":
        raise SystemExit(1)


def test_s3_store_survives_a_fork(s3_store: S3Store) -> None:
    """A forked worker (Celery prefork) gets its own client instead of the parent's connections."""
    s3_store.put_bytes("before-fork", b"1")
    child = multiprocessing.get_context("fork").Process(target=_write_from_child, args=(s3_store,))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert s3_store.get_bytes("from-child") == b"2"


# ------------------------------------------------------------------------------------- no server


def test_local_store_has_no_presigned_url(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).url_for("a") is None


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://bkt", "bkt", ""), ("s3://bkt/", "bkt", ""), ("s3://bkt/a/b/", "bkt", "a/b")],
)
def test_s3_url_parsing(url: str, bucket: str, prefix: str) -> None:
    store = S3Store.from_url(url, Settings())
    assert (store.bucket, store.prefix) == (bucket, prefix)


@pytest.mark.parametrize("url", ["s3:///nobucket", "file:///tmp/x", "bkt/prefix"])
def test_s3_url_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        S3Store.from_url(url, Settings())
