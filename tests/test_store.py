"""Object stores: the directory store and the S3 store (moto on loopback) keep one contract."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from s3_server import MotoServer

from streamcl.errors import StoreError, StoreNotFoundError
from streamcl.models.store import DirectoryStore, ObjectStore, S3Store, open_store


def _contract(store: ObjectStore) -> None:
    assert store.list() == []
    store.put("versions/m/v2.bin", b"two")
    store.put("versions/m/v1.bin", b"one")
    store.put("pointer/m.json", b"{}")
    assert store.get("versions/m/v1.bin") == b"one"
    assert store.list() == ["pointer/m.json", "versions/m/v1.bin", "versions/m/v2.bin"]
    assert store.list("versions/") == ["versions/m/v1.bin", "versions/m/v2.bin"]
    store.put("versions/m/v1.bin", b"replaced")
    assert store.get("versions/m/v1.bin") == b"replaced"
    store.delete("versions/m/v1.bin")
    store.delete("versions/m/v1.bin")  # already gone: no error
    with pytest.raises(StoreNotFoundError):
        store.get("versions/m/v1.bin")
    with pytest.raises(StoreError):
        store.put("../escape", b"x")


def test_directory_store_contract(tmp_path: Path) -> None:
    _contract(DirectoryStore(tmp_path / "store"))


def test_directory_put_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.put("a/b", b"x" * 1000)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]
    os.chmod(tmp_path / "a", 0o500)  # read-only folder: the write fails, the old object stays
    try:
        if os.geteuid() != 0:
            with pytest.raises(StoreError):
                store.put("a/b", b"new")
        assert store.get("a/b") in (b"x" * 1000, b"new")
    finally:
        os.chmod(tmp_path / "a", 0o700)


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "p")), DirectoryStore)
    assert isinstance(open_store(f"file://{tmp_path}/q"), DirectoryStore)
    assert isinstance(open_store("s3://bucket/prefix", endpoint_url="http://127.0.0.1:1"), S3Store)
    with pytest.raises(StoreError, match="scheme"):
        open_store("ftp://x/y")
    with pytest.raises(StoreError, match="bucket"):
        open_store("s3:///nobucket")


def test_s3_store_contract(s3_server: MotoServer, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/models", endpoint_url=s3_server.endpoint)
    _contract(store)
    # the prefix isolates stores sharing a bucket
    other = open_store(f"s3://{s3_bucket}/other", endpoint_url=s3_server.endpoint)
    other.put("x", b"1")
    assert "x" not in store.list()


def test_s3_store_unreachable_raises_store_error() -> None:
    server = MotoServer()  # never started: nothing listens on its port
    store = S3Store(
        "b",
        "p",
        endpoint_url=server.endpoint,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
    )
    with pytest.raises(StoreError) as info:
        store.get("anything")
    assert not isinstance(info.value, StoreNotFoundError)
