"""Object store on an S3-compatible server (boto3; SeaweedFS, MinIO, AWS S3)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from annotate_anyone.errors import ConfigError, NotFound, StorageError
from annotate_anyone.settings import Settings, reveal
from annotate_anyone.storage.base import ObjectStore

MB = 1024 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``; keys are relative to the prefix.

    Atomicity comes from S3 itself: a PUT, and a multipart upload once completed, replaces the object
    in one step, and readers see the old or the new object, never a part. ``put_file`` uses a
    multipart upload above ``multipart_threshold``; if the source stream fails, boto3 aborts the
    upload, so no object (and no stray part) is left behind.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        create_bucket: bool = False,
        multipart_threshold: int = 8 * MB,
        multipart_chunksize: int = 8 * MB,
        max_concurrency: int = 4,
    ) -> None:
        if not bucket:
            raise ConfigError("an S3 store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.public_endpoint_url = public_endpoint_url
        self._client_args = {
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": region,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        }
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        self._clients: dict[str | None, Any] = {}
        self._client_pid = 0
        if create_bucket:
            self.ensure_bucket()

    @classmethod
    def from_url(cls, url: str, settings: Settings, *, create_bucket: bool = False) -> S3Store:
        """Build from ``s3://bucket/prefix`` with endpoint, credentials and region from ``settings``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"not an s3://bucket/prefix URL: {url!r}")
        return cls(
            parts.netloc,
            parts.path,
            endpoint_url=settings.s3_endpoint_url,
            # the S3 address as browsers outside the servers' network reach it (None: endpoint_url)
            public_endpoint_url=settings.s3_public_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=reveal(settings.s3_secret_key),
            region=settings.s3_region,
            create_bucket=create_bucket,
        )

    @property
    def client(self) -> Any:  # botocore builds the client class at run time
        """The boto3 client, re-created after a fork (connection pools must not cross processes)."""
        return self._client_for(self._client_args["endpoint_url"])

    def _client_for(self, endpoint_url: str | None) -> Any:
        if self._client_pid != os.getpid():
            self._clients = {}
            self._client_pid = os.getpid()
        if endpoint_url not in self._clients:
            args = {**self._client_args, "endpoint_url": endpoint_url}
            self._clients[endpoint_url] = boto3.session.Session().client("s3", **args)
        return self._clients[endpoint_url]

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        with self._errors(""):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                    raise
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def key(self, key: str) -> str:
        """The full object key for a store key; refuses absolute keys and ``..`` segments."""
        if not key or key.startswith("/") or any(part in ("..", ".") for part in key.split("/")):
            raise StorageError(f"invalid object key: {key!r}")
        return posixpath.join(self.prefix, key) if self.prefix else key

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate botocore errors: missing objects to NotFound, the rest to StorageError."""
        try:
            yield
        except ClientError as exc:
            if key and _code(exc) in _MISSING_CODES:
                raise NotFound(f"no object {key!r} in {self.url}") from exc
            raise StorageError(f"{self.url}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{self.url}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data, **extra)

    def put_file(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        with self._errors(key):
            self.client.upload_fileobj(fileobj, self.bucket, self.key(key), ExtraArgs=extra, Config=self.transfer)

    def open(self, key: str) -> BinaryIO:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"]

    def _head(self, key: str) -> dict:
        with self._errors(key):
            return self.client.head_object(Bucket=self.bucket, Key=self.key(key))

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors(""):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix)
        with self._errors(""):
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(base) :]
                    if name and not name.endswith("/"):
                        yield name

    def url_for(self, key: str, expires: int = 3600) -> str:
        """A presigned GET URL, valid for ``expires`` seconds, signed for ``public_endpoint_url`` if set.

        The host is part of the signature, so a URL for browsers outside the servers' network (e.g. an
        annotator's) must be signed for the address they reach, not rewritten afterwards.
        """
        client = self._client_for(self.public_endpoint_url) if self.public_endpoint_url else self.client
        with self._errors(key):
            return client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(key)}, ExpiresIn=expires
            )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
