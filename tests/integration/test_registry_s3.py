"""Artifacts on a real S3-API server: atomic upload, verified download, tamper detection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import ChecksumMismatchError, UnavailableError
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration.conftest import RegistryFactory, S3Server
from tests.unit.registry.fakes import FakeModel, install_fakes

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(monkeypatch)


def _keys(s3: S3Server, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def _key_of(uri: str, s3: S3Server) -> str:
    return uri.removeprefix(f"s3://{s3.bucket}/")


@pytest.fixture
def sqlite_s3_registry(tmp_path: Path, s3_server: S3Server) -> Iterator[Registry]:
    """The embedded registry database with artifacts on S3, configured through Settings."""
    settings = Settings(
        registry=str(tmp_path / "reg"),
        artifacts=f"s3://{s3_server.bucket}/{tmp_path.name}",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_key=s3_server.key,
        s3_secret=s3_server.secret,
        local_cache_dir=str(tmp_path / "cache"),
    )
    reg = Registry.from_settings(settings)
    yield reg
    reg.close()


def test_push_uploads_every_file_under_a_fresh_key(
    sqlite_s3_registry: Registry, s3_server: S3Server
) -> None:
    v1 = sqlite_s3_registry.push(FakeModel(payload=b"one"), name="m")
    v2 = sqlite_s3_registry.push(FakeModel(payload=b"two"), name="m")
    assert v1.artifact_uri != v2.artifact_uri
    key = _key_of(v1.artifact_uri, s3_server)
    assert _keys(s3_server, key + "/") == [
        f"{key}/conf/config.json",
        f"{key}/modelyard.json",
        f"{key}/weights.bin",
    ]


def test_fetch_downloads_verified_files_into_the_cache(
    sqlite_s3_registry: Registry, tmp_path: Path
) -> None:
    v = sqlite_s3_registry.push(FakeModel(payload=b"weights"), name="m", alias="production")
    path = sqlite_s3_registry.fetch(sqlite_s3_registry.resolve("m"))
    assert path.is_relative_to(tmp_path / "cache")
    assert (path / "weights.bin").read_bytes() == b"weights"
    assert sqlite_s3_registry.fetch(v) == path


def test_alias_move_seen_by_another_client(make_registry: RegistryFactory) -> None:
    a, b = make_registry(), make_registry(cache="b")
    a.push(FakeModel(payload=b"v1"), name="m", alias="production")
    a.push(FakeModel(payload=b"v2"), name="m")
    assert (b.fetch(b.resolve("m")) / "weights.bin").read_bytes() == b"v1"
    a.set_alias("m", "production", 2)
    assert (b.fetch(b.resolve("m")) / "weights.bin").read_bytes() == b"v2"


def test_tampered_remote_object_is_named(
    make_registry: RegistryFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    reg = make_registry()
    v = reg.push(FakeModel(payload=b"weights"), name="m")
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key=f"{_key_of(v.artifact_uri, s3_server)}/weights.bin", Body=b"X"
    )
    with pytest.raises(ChecksumMismatchError, match=r"m:1 .*'weights\.bin' has 1 bytes"):
        reg.fetch(v)
    cache = tmp_path / "cache" / "m"
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-verified is kept


def test_deleted_remote_object_is_a_checksum_error(
    make_registry: RegistryFactory, s3_server: S3Server
) -> None:
    reg = make_registry()
    v = reg.push(FakeModel(), name="m")
    key = f"{_key_of(v.artifact_uri, s3_server)}/conf/config.json"
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=key)
    with pytest.raises(ChecksumMismatchError, match="missing"):
        reg.fetch(v)


def test_failed_upload_leaves_no_version_and_no_objects(
    make_registry: RegistryFactory, s3_server: S3Server
) -> None:
    reg = make_registry()
    real_pipe = reg.artifact_store.fs.pipe_file

    def failing_pipe(path: str, data: bytes, **kwargs: Any) -> None:
        raise OSError("connection reset")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reg.artifact_store.fs, "pipe_file", failing_pipe)
        with pytest.raises(UnavailableError, match="connection reset"):
            reg.push(FakeModel(), name="m")
    assert reg.list_models() == []
    root = reg.artifact_store.root.removeprefix(f"{s3_server.bucket}/")
    assert _keys(s3_server, f"{root}/m/") == []
    assert reg.artifact_store.fs.pipe_file == real_pipe
    assert reg.push(FakeModel(), name="m").version == 1
