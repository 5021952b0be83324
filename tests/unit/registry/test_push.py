"""What push accepts and refuses, and that a failed push leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import (
    ChecksumMismatchError,
    FailedPreconditionError,
    InvalidInputError,
    UnavailableError,
    UnsafeArtifactError,
)
from modelyard.manifest import BatchingHints, Manifest
from modelyard.registry import Registry, catalog
from modelyard.registry.checksums import sha256_file
from modelyard.types import Datatype, Signature, TensorSpec
from tests.testmodels import simple_model
from tests.unit.registry.fakes import SIGNATURE, FakeModel, manifest_dir


def _artifact_dirs(registry: Registry, model: str) -> list[Path]:
    root = Path(registry.artifact_store.root) / model
    return sorted(root.iterdir()) if root.exists() else []


def test_push_records_every_file_with_its_sha256(registry: Registry) -> None:
    v = registry.push(FakeModel(payload=b"abc"), name="m")
    files = {f.path: f for f in v.manifest.files}
    assert set(files) == {"weights.bin", "conf/config.json"}
    root = registry.fetch(v)
    for rel, entry in files.items():
        assert entry.sha256 == sha256_file(root / rel)
        assert entry.size == (root / rel).stat().st_size
    stored = Manifest.from_json((root / "modelyard.json").read_text())
    assert stored == v.manifest
    assert v.manifest.runtime_options == {"factor": 2.0}


def test_signature_is_required(registry: Registry) -> None:
    with pytest.raises(
        InvalidInputError, match=r"cannot infer the signature .*signature= or sample="
    ):
        registry.push(FakeModel(infer_signature=False), name="m")
    assert registry.list_models() == []
    assert _artifact_dirs(registry, "m") == []


def test_explicit_signature_wins(registry: Registry) -> None:
    sig = Signature(inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1, 2)),))
    v = registry.push(FakeModel(), name="m", signature=sig)
    assert v.manifest.signature == sig


def test_signature_as_a_mapping(registry: Registry) -> None:
    v = registry.push(FakeModel(), name="m", signature=SIGNATURE.model_dump(mode="json"))
    assert v.manifest.signature == SIGNATURE
    with pytest.raises(InvalidInputError, match=r"signature: inputs\.0\.datatype"):
        registry.push(
            FakeModel(),
            name="m",
            signature={"inputs": [{"name": "x", "datatype": "F", "shape": [1]}]},
        )


def test_sample_infers_signature_and_first_row_becomes_warmup(registry: Registry) -> None:
    sample = np.arange(6, dtype=np.float32).reshape(3, 2)
    v = registry.push(FakeModel(infer_signature=False), name="m", sample=sample)
    assert v.manifest.signature.inputs[0].name == "input"
    assert v.manifest.warmup == {"input": {"datatype": "FP32", "shape": [1, 2], "data": [0.0, 1.0]}}


def test_bare_sample_is_renamed_to_the_single_input(registry: Registry) -> None:
    v = registry.push(FakeModel(), name="m", sample=np.ones((4, 2), dtype=np.float32))
    assert v.manifest.warmup is not None
    assert set(v.manifest.warmup) == {"x"}
    assert v.manifest.warmup["x"]["shape"] == [1, 2]


def test_explicit_warmup_must_match_the_signature(registry: Registry) -> None:
    warm = {"x": np.zeros((2, 2), dtype=np.float32)}
    v = registry.push(FakeModel(), name="m", warmup=warm)
    assert v.manifest.warmup == {"x": {"datatype": "FP32", "shape": [2, 2], "data": [0.0] * 4}}
    with pytest.raises(InvalidInputError, match=r"warmup: inputs \['z'\]"):
        registry.push(FakeModel(), name="m", warmup={"z": np.zeros(1)})


def test_batching_hints(registry: Registry) -> None:
    v = registry.push(FakeModel(), name="m", batching={"max_batch_size": 32, "max_wait_us": 500})
    assert v.manifest.batching == BatchingHints(max_batch_size=32, max_wait_us=500)
    with pytest.raises(InvalidInputError, match=r"batching: max_batch_size"):
        registry.push(FakeModel(), name="m", batching={"max_batch_size": 0})
    with pytest.raises(InvalidInputError, match=r"batching: bogus"):
        registry.push(FakeModel(), name="m", batching={"bogus": 1})


def test_push_missing_path(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"does not exist"):
        registry.push(tmp_path / "nope.onnx", name="m")


def test_push_directory_without_manifest(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidInputError, match=r"has no modelyard.json"):
        registry.push(tmp_path / "d", name="m")


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib", ".PKL"])
def test_pickle_files_are_refused_without_opt_in(
    registry: Registry, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeArtifactError, match=r"allow_pickle=True"):
        registry.push(path, name="m")
    assert registry.list_models() == []


def test_pickle_opt_in_per_push_and_per_registry(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    with Registry(tmp_path / "r1") as reg:
        v = reg.push(path, name="m", allow_pickle=True)
        assert [f.path for f in v.manifest.files] == ["model.pkl"]
    with Registry(tmp_path / "r2", allow_pickle=True) as reg:
        assert reg.push(path, name="m").version == 1
        with pytest.raises(UnsafeArtifactError):
            reg.push(path, name="m", allow_pickle=False)


def _fake_manifest(files: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {
        "runtime": "fake",
        "files": files or [],
        "signature": SIGNATURE.model_dump(mode="json"),
        "runtime_options": {"factor": 3.0},
    }


def test_push_directory_with_manifest_recomputes_checksums(
    registry: Registry, tmp_path: Path
) -> None:
    src = manifest_dir(
        tmp_path / "d",
        {"weights.bin": b"w", "conf/config.json": b'{"factor": 3.0}'},
        _fake_manifest(),
    )
    v = registry.push(src, name="m", batching={"max_batch_size": 8})
    assert {f.path for f in v.manifest.files} == {"weights.bin", "conf/config.json"}
    assert v.manifest.runtime_options == {"factor": 3.0}
    assert v.manifest.batching.max_batch_size == 8
    assert (registry.fetch(v) / "weights.bin").read_bytes() == b"w"
    assert json.loads((src / "modelyard.json").read_text())["files"] == []  # source untouched


def test_push_directory_verifies_listed_checksums(registry: Registry, tmp_path: Path) -> None:
    good = {"path": "weights.bin", "sha256": "0" * 64, "size": 1}
    src = manifest_dir(tmp_path / "d", {"weights.bin": b"w"}, _fake_manifest([good]))
    with pytest.raises(ChecksumMismatchError, match=r"'weights.bin' has sha256"):
        registry.push(src, name="m")
    assert registry.list_models() == []


def test_push_directory_refuses_escaping_paths(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"s")
    evil = {"path": "../secret", "sha256": "0" * 64, "size": 1}
    src = manifest_dir(tmp_path / "d", {}, _fake_manifest([evil]))
    with pytest.raises(InvalidInputError, match=r"must be relative and stay inside"):
        registry.push(src, name="m")


def test_push_directory_with_unknown_runtime(registry: Registry, tmp_path: Path) -> None:
    src = manifest_dir(tmp_path / "d", {"w": b"w"}, {**_fake_manifest(), "runtime": "nosuch"})
    with pytest.raises(FailedPreconditionError, match=r"unknown runtime kind 'nosuch'"):
        registry.push(src, name="m")


def test_push_directory_with_invalid_manifest(registry: Registry, tmp_path: Path) -> None:
    src = manifest_dir(tmp_path / "d", {}, {"runtime": "fake", "files": "nope"})
    with pytest.raises(InvalidInputError, match=r"invalid manifest: files"):
        registry.push(src, name="m")


def test_push_directory_with_pickle_inside(registry: Registry, tmp_path: Path) -> None:
    src = manifest_dir(tmp_path / "d", {"model.joblib": b"x"}, _fake_manifest())
    with pytest.raises(UnsafeArtifactError):
        registry.push(src, name="m")
    assert registry.push(src, name="m", allow_pickle=True).version == 1


def test_failed_upload_leaves_no_version_and_no_files(registry: Registry) -> None:
    def broken_pipe(path: str, data: bytes) -> None:  # fails after the model files were copied
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry.artifact_store.fs, "pipe_file", broken_pipe)
        with pytest.raises(UnavailableError, match=r"upload .* failed: disk full"):
            registry.push(FakeModel(), name="m")
    assert registry.list_models() == []
    assert _artifact_dirs(registry, "m") == []
    assert registry.push(FakeModel(), name="m").version == 1


def test_failed_publish_removes_the_uploaded_artifact(registry: Registry) -> None:
    registry.push(FakeModel(), name="m")

    def boom(*args: object) -> int:
        raise RuntimeError("database went away")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog, "insert_version", boom)
        with pytest.raises(RuntimeError, match=r"database went away"):
            registry.push(FakeModel(), name="m")
    assert [v.version for v in registry.list_versions("m")] == [1]
    assert len(_artifact_dirs(registry, "m")) == 1
    assert registry.push(FakeModel(), name="m").version == 2


def test_failed_alias_rolls_back_the_version(registry: Registry) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("alias write failed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog, "set_alias", boom)
        with pytest.raises(RuntimeError, match=r"alias write failed"):
            registry.push(FakeModel(), name="m", alias="production")
    assert _artifact_dirs(registry, "m") == []
    assert registry.push(FakeModel(), name="m").version == 1


def test_push_onnx_file_with_the_onnx_runtime(registry: Registry, tmp_path: Path) -> None:
    path = simple_model(tmp_path / "simple.onnx")
    v = registry.push(path, name="simple", alias="production")
    assert v.manifest.runtime == "onnx"
    assert [s.name for s in v.manifest.signature.inputs] == ["INPUT0", "INPUT1"]
    assert v.manifest.signature.inputs[0].shape == (-1, 16)
    fetched = registry.fetch(registry.resolve("simple"))
    assert sha256_file(fetched / v.manifest.files[0].path) == sha256_file(path)
