"""Runtime registry and detection: lookup by kind, plug-ins, missing engines, what maps where."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from modelyard.errors import FailedPreconditionError, InvalidInputError, MissingDependencyError
from modelyard.runtime import Runtime
from modelyard.runtimes import _registry, detect, get_runtime_class, known_kinds, register
from modelyard.types import Array
from tests import testmodels
from tests.unit.runtimes.models import iris_like
from tests.unit.runtimes.pymodels import ScaleModel


class Marker:
    """An object only the plug-in runtime below recognises."""


class PluginRuntime(Runtime):
    kind: ClassVar[str] = "plugin"

    @classmethod
    def can_save(cls, obj: object) -> bool:
        return isinstance(obj, Marker)

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return dict(inputs)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_classes", dict(_registry._classes))


def test_importing_runtimes_imports_no_engine() -> None:
    code = (
        "import sys, modelyard.runtimes\n"
        "print(sorted(m for m in ('sklearn', 'xgboost', 'lightgbm', 'skops', 'onnxruntime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_builtin_kinds_resolve_to_their_classes() -> None:
    for kind in ("onnx", "sklearn", "xgboost", "lightgbm", "python"):
        assert get_runtime_class(kind).kind == kind
    assert set(known_kinds()) >= {"onnx", "sklearn", "xgboost", "lightgbm", "python"}


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(FailedPreconditionError, match=r"unknown runtime kind 'tensorflow'.*onnx"):
        get_runtime_class("tensorflow")


def test_missing_engine_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    monkeypatch.delitem(_registry._classes, "xgboost", raising=False)
    monkeypatch.delitem(sys.modules, "modelyard.runtimes.xgboost", raising=False)
    monkeypatch.setitem(sys.modules, "xgboost", None)  # makes `import xgboost` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'modelyard\[xgboost\]'"):
        get_runtime_class("xgboost")


def test_detect_file_needing_missing_engine_gives_hint(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None, tmp_path: Path
) -> None:
    monkeypatch.delitem(_registry._classes, "lightgbm", raising=False)
    monkeypatch.delitem(sys.modules, "modelyard.runtimes.lightgbm", raising=False)
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    model = tmp_path / "model.txt"
    model.write_text("tree\nversion=v4\n")
    with pytest.raises(MissingDependencyError, match="lightgbm"):
        detect(str(model))


def test_register_plugin_is_detected_first(clean_registry: None) -> None:
    register(PluginRuntime)
    assert get_runtime_class("plugin") is PluginRuntime
    assert detect(Marker()) is PluginRuntime
    assert "plugin" in known_kinds()


def test_register_rejects_bad_classes(clean_registry: None) -> None:
    class NoKind(PluginRuntime):
        kind: ClassVar[str] = ""

    with pytest.raises(InvalidInputError, match="kind"):
        register(NoKind)
    with pytest.raises(InvalidInputError, match="not a subclass"):
        register(Marker)  # type: ignore[arg-type]


def test_detect_in_memory_models() -> None:
    from lightgbm import LGBMRegressor
    from sklearn.linear_model import LinearRegression
    from xgboost import XGBRegressor

    x, _ = iris_like(30)
    y = x[:, 0]
    assert detect(LinearRegression().fit(x, y)).kind == "sklearn"
    assert detect(XGBRegressor(n_estimators=2).fit(x, y)).kind == "xgboost"
    assert detect(LGBMRegressor(n_estimators=2, verbose=-1).fit(x, y)).kind == "lightgbm"
    assert detect(ScaleModel()).kind == "python"
    assert detect(ScaleModel).kind == "python"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("m.onnx", "onnx"), ("m.pkl", "sklearn"), ("m.pickle", "sklearn"), ("m.joblib", "sklearn")],
)
def test_detect_model_files(tmp_path: Path, name: str, kind: str) -> None:
    path = tmp_path / name
    if kind == "onnx":
        testmodels.linear_fp32_model(path)
    else:
        path.write_bytes(pickle.dumps({"not": "loaded by detect"}))
    assert detect(str(path)).kind == kind
    assert detect(path).kind == kind


@pytest.mark.parametrize("obj", [object(), "no/such/file.onnx", 42, {"weights": [1, 2]}], ids=repr)
def test_detect_nothing_fits(obj: object) -> None:
    with pytest.raises(InvalidInputError, match="cannot find a runtime"):
        detect(obj)


def test_detect_rejects_unrelated_text_and_json(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    config = tmp_path / "config.json"
    config.write_text('{"a": 1}')
    for path in (notes, config):
        with pytest.raises(InvalidInputError, match="cannot find a runtime"):
            detect(path)
