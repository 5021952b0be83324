"""fetch(): checksums verified in place (local store) or on a verified cached copy (remote)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import ChecksumMismatchError, InvalidInputError
from modelyard.manifest import FileEntry
from modelyard.registry import Registry
from tests.unit.registry.fakes import FakeModel


def test_local_fetch_returns_the_verified_artifact_directory(registry: Registry) -> None:
    v = registry.push(FakeModel(payload=b"w"), name="m")
    path = registry.fetch(v)
    assert (path / "weights.bin").read_bytes() == b"w"
    assert path.is_relative_to(Path(registry.artifact_store.root))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: p.write_bytes(b"evil!!!"), "'weights.bin' has sha256"),  # same size
        (lambda p: p.write_bytes(b"longer payload"), "'weights.bin' has 14 bytes, expected 7"),
        (lambda p: p.unlink(), "'weights.bin' is missing"),
    ],
)
def test_tampered_local_file_is_named(registry: Registry, tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    v = registry.push(FakeModel(payload=b"weights"), name="m")
    tamper(registry.fetch(v) / "weights.bin")
    with pytest.raises(ChecksumMismatchError, match=f"m:1: file {message}"):
        registry.fetch(v)


def test_manifest_paths_cannot_escape(registry: Registry) -> None:
    v = registry.push(FakeModel(), name="m")
    evil = v.manifest.model_copy(
        update={"files": (FileEntry(path="../../etc/passwd", sha256="0" * 64, size=1),)}
    )
    with pytest.raises(InvalidInputError, match=r"must be relative"):
        registry.fetch(dataclasses.replace(v, manifest=evil))


@pytest.fixture
def remote_root() -> Iterator[str]:
    """A remote-style (fsspec, non-local) artifact store, in memory: no sockets."""
    root = f"memory://modelyard-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _remote_registry(tmp_path: Path, root: str, cache: str) -> Registry:
    return Registry(
        tmp_path / "reg", artifacts=root, local_cache_dir=tmp_path / cache, clock=FakeClock()
    )


def test_remote_fetch_downloads_verifies_and_reuses(tmp_path: Path, remote_root: str) -> None:
    with _remote_registry(tmp_path, remote_root, "cache") as reg:
        v = reg.push(FakeModel(payload=b"w"), name="m")
        assert v.artifact_uri.startswith("memory://")
        path = reg.fetch(v)
        assert path.is_relative_to(tmp_path / "cache")
        assert (path / "weights.bin").read_bytes() == b"w"
        assert (path / "modelyard.json").is_file()

        def no_download(*args: object) -> None:
            raise AssertionError("a verified cached copy must be reused")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reg.artifact_store, "download", no_download)
            assert reg.fetch(v) == path
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_tampered_remote_object_is_named_and_not_cached(tmp_path: Path, remote_root: str) -> None:
    with _remote_registry(tmp_path, remote_root, "cache") as reg:
        v = reg.push(FakeModel(payload=b"weights"), name="m")
        fsspec.filesystem("memory").pipe_file(
            f"{v.artifact_uri}/conf/config.json", b'{"factor": 9}'
        )
        with pytest.raises(ChecksumMismatchError, match=r"m:1 .*'conf/config.json' has"):
            reg.fetch(v)
        model_cache = tmp_path / "cache" / "m"
        assert not model_cache.exists() or list(model_cache.iterdir()) == []


def test_missing_remote_object_is_a_checksum_error(tmp_path: Path, remote_root: str) -> None:
    with _remote_registry(tmp_path, remote_root, "cache") as reg:
        v = reg.push(FakeModel(), name="m")
        fsspec.filesystem("memory").rm(f"{v.artifact_uri}/weights.bin")
        with pytest.raises(ChecksumMismatchError, match=r"missing"):
            reg.fetch(v)


def test_damaged_cached_copy_is_downloaded_again(tmp_path: Path, remote_root: str) -> None:
    with _remote_registry(tmp_path, remote_root, "cache") as reg:
        v = reg.push(FakeModel(payload=b"weights"), name="m")
        path = reg.fetch(v)
        (path / "weights.bin").write_bytes(b"corrupt")
        assert reg.fetch(v) == path
        assert (path / "weights.bin").read_bytes() == b"weights"
