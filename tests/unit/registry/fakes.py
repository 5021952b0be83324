"""A tiny fake runtime for registry tests, independent of any real inference engine.

``install_fakes`` points the registry's packaging seams at it (falling back to the real runtimes
for anything else); spawned child processes call it too, so they need no pytest fixture.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from modelyard.registry import packaging
from modelyard.runtime import Runtime, SavedModel
from modelyard.types import Array, Datatype, Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 2)),),
    outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 2)),),
)


class FakeModel:
    """An in-memory "model": y = x * factor. ``payload`` becomes its weights file."""

    def __init__(
        self, factor: float = 2.0, payload: bytes = b"weights", infer_signature: bool = True
    ) -> None:
        self.factor = factor
        self.payload = payload
        self.infer_signature = infer_signature


class FakeRuntime(Runtime):
    kind = "fake"

    @classmethod
    def can_save(cls, obj: object) -> bool:
        return isinstance(obj, FakeModel)

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        assert isinstance(obj, FakeModel)
        (directory / "weights.bin").write_bytes(obj.payload)
        (directory / "conf").mkdir()
        (directory / "conf" / "config.json").write_text(json.dumps({"factor": obj.factor}))
        signature = SIGNATURE if obj.infer_signature else _from_sample(sample)
        return SavedModel(
            signature=signature,
            runtime_options={"factor": obj.factor},
            metadata={"saved_by": "fake"},
        )

    def load(self) -> None:
        self.factor = json.loads((self.path / "conf" / "config.json").read_text())["factor"]

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"y": inputs["x"] * self.factor}


class FakePickleRuntime(Runtime):
    """Stands in for the sklearn runtime's pickle format: copies a ``.pkl`` file."""

    kind = "fakepickle"

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        shutil.copyfile(Path(str(obj)), directory / "model.pkl")
        return SavedModel(signature=SIGNATURE)

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"y": inputs["x"]}


def _from_sample(sample: Mapping[str, Array] | None) -> Signature | None:
    if not sample:
        return None
    specs = tuple(
        TensorSpec(name=n, datatype=Datatype.from_numpy(a.dtype), shape=(-1, *a.shape[1:]))
        for n, a in sample.items()
    )
    return Signature(
        inputs=specs, outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1,)),)
    )


_FAKES: dict[str, type[Runtime]] = {"fake": FakeRuntime, "fakepickle": FakePickleRuntime}
_real_detect = packaging.detect_runtime
_real_class = packaging.runtime_class


def _detect(obj: object) -> type[Runtime]:
    if isinstance(obj, FakeModel):
        return FakeRuntime
    if isinstance(obj, str | Path) and Path(obj).suffix == ".pkl":
        return FakePickleRuntime
    return _real_detect(obj)


def _runtime_class(kind: str) -> type[Runtime]:
    return _FAKES[kind] if kind in _FAKES else _real_class(kind)


def install_fakes(monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Route the registry's runtime lookups through the fakes (for the whole process when no
    ``monkeypatch`` is given, as in a spawned child)."""
    if monkeypatch is None:
        packaging.detect_runtime = _detect
        packaging.runtime_class = _runtime_class
        return
    monkeypatch.setattr(packaging, "detect_runtime", _detect)
    monkeypatch.setattr(packaging, "runtime_class", _runtime_class)


def manifest_dir(root: Path, files: Mapping[str, bytes], manifest: dict[str, Any]) -> Path:
    """A directory holding ``files`` and a hand-written ``modelyard.json``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "modelyard.json").write_text(json.dumps(manifest))
    return root
