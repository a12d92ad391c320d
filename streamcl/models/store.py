"""Object stores for model versions and checkpoints: a directory or S3-compatible storage.

One small contract, :class:`ObjectStore`, with two implementations: :class:`DirectoryStore`
(the embedded default; a shared ReadWriteMany volume in Kubernetes) and :class:`S3Store`
(S3 or any S3-compatible service through boto3). Names are ``/``-separated relative paths
such as ``versions/streamcl/v000000000001.streamcl``.

A ``put`` is atomic for readers: they see the whole new object or the old one, never a
part. The directory store writes a temporary file, fsyncs it, renames it over the name and
fsyncs the folder (the POSIX recipe); S3 gives the same guarantee for a single PUT.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from streamcl.errors import StoreError, StoreNotFoundError

__all__ = [
    "DirectoryStore",
    "ObjectStore",
    "S3Store",
    "StoreError",
    "StoreNotFoundError",
    "open_store",
]

_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _check_name(name: str) -> str:
    if not _NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise StoreError(f"invalid object name {name!r} (relative path of [A-Za-z0-9._-] parts)")
    return name


@runtime_checkable
class ObjectStore(Protocol):
    """Named immutable-or-replaced byte objects (what model versions and pointers need)."""

    url: str

    def put(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` atomically (readers see all of it or the old object).

        Raises
        ------
        StoreError
            The store is unreachable or refused the write.
        """

    def get(self, name: str) -> bytes:
        """The bytes stored under ``name``.

        Raises
        ------
        StoreNotFoundError
            No object of that name.
        StoreError
            The store is unreachable.
        """

    def list(self, prefix: str = "") -> list[str]:
        """Names starting with ``prefix``, sorted.

        Raises
        ------
        StoreError
            The store is unreachable.
        """

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error when it is already gone).

        Raises
        ------
        StoreError
            The store is unreachable.
        """


class DirectoryStore:
    """Objects as files under ``root`` (created if missing).

    Parameters
    ----------
    root
        Folder of the store; a name ``a/b`` is the file ``root/a/b``. Created if missing
        and possible; a reader on a read-only mount waits for the writer to create it
        (:meth:`list` raises :class:`StoreError` until then).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.resolve()}"
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / _check_name(name)

    def put(self, name: str, data: bytes) -> None:  # noqa: D102 (documented on the protocol)
        final = self._path(name)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise StoreError(f"cannot write {final}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, name: str) -> bytes:  # noqa: D102
        path = self._path(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreNotFoundError(f"{self.url}/{name} does not exist") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None

    def list(self, prefix: str = "") -> list[str]:  # noqa: D102
        if not self.root.is_dir():
            raise StoreError(f"the store folder {self.root} is missing")
        out = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                name = path.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    out.append(name)
        return sorted(out)

    def delete(self, name: str) -> None:  # noqa: D102
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {name} in {self.url}: {exc}") from None


class S3Store:
    """Objects in an S3 bucket under a key prefix, through boto3.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` in the environment, a profile, or the pod's role) unless given.
    Timeouts and retries are short so an unreachable store raises :class:`StoreError` within
    a few seconds instead of blocking a serving replica's poll.

    Parameters
    ----------
    bucket
        Bucket name (must exist).
    prefix
        Key prefix (``models/`` style); ``""`` for the bucket's root.
    endpoint_url
        S3-compatible endpoint (MinIO, moto, Ceph...); None for AWS.
    region
        Region name; None for boto3's default.
    access_key_id, secret_access_key
        Explicit credentials; None uses boto3's chain.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        config = Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def _call(self, what: str, name: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise StoreNotFoundError(f"{self.url}{name} does not exist") from None
            raise StoreError(f"S3 {what} {self.url}{name} failed: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"S3 {what} {self.url}{name} failed: {exc}") from None

    def put(self, name: str, data: bytes) -> None:  # noqa: D102
        key = self.prefix + _check_name(name)
        self._call("put", name, self._client.put_object, Key=key, Body=data)

    def get(self, name: str) -> bytes:  # noqa: D102
        key = self.prefix + _check_name(name)
        response = self._call("get", name, self._client.get_object, Key=key)
        try:
            return bytes(response["Body"].read())
        except Exception as exc:  # a connection cut mid-body
            raise StoreError(f"S3 get {self.url}{name} failed while reading: {exc}") from None

    def list(self, prefix: str = "") -> list[str]:  # noqa: D102
        names: list[str] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(
                "list", prefix, self._client.list_objects_v2, Prefix=self.prefix + prefix, **extra
            )
            names += [obj["Key"][len(self.prefix) :] for obj in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(names)

    def delete(self, name: str) -> None:  # noqa: D102
        key = self.prefix + _check_name(name)
        self._call("delete", name, self._client.delete_object, Key=key)


def open_store(
    url: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> ObjectStore:
    """The store named by ``url``: ``file:///path``, a plain path, or ``s3://bucket/prefix``.

    Parameters
    ----------
    url
        Where the store is.
    endpoint_url, region, access_key_id, secret_access_key
        S3 options (see :class:`S3Store`); ignored for a directory.

    Raises
    ------
    StoreError
        An unknown scheme, or an S3 URL without a bucket.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"store URL {url!r} names no bucket (s3://bucket/prefix)")
        return S3Store(
            parsed.netloc,
            parsed.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    if parsed.scheme == "file":
        return DirectoryStore(Path(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or a Windows drive)
        return DirectoryStore(Path(url))
    raise StoreError(f"unknown store URL scheme {parsed.scheme!r} in {url!r} (file:// or s3://)")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
