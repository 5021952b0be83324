"""MLflow source: URI parsing and flavor choice (tables), import and alias sync against a fake
MLflow registry (real ModelYard registry, real runtimes, model directories as MLflow writes
them). The real MLflow server is in tests/integration/test_mlflow_registry.py."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.cli_predict import load_runtime
from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError, ModelNotFoundError, UnsafeArtifactError
from modelyard.registry import Registry
from modelyard.registry.mlflow_source import (
    FlavorChoice,
    MlflowRef,
    choose_flavor,
    import_version,
    parse_ref,
    sync_alias,
)
from modelyard.settings import Settings
from tests.unit.mlflow.fakes import ONNX_FLAVOR, FakeMlflow, X, Y, onnx_bytes, skops_bytes


# ---- tables ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/fraud/7", MlflowRef("fraud", version=7)),
        ("models:/fraud@champion", MlflowRef("fraud", alias="champion")),
        ("mlflow:/fraud@champion", MlflowRef("fraud", alias="champion")),
        ("mlflow:/my.model-v2/12", MlflowRef("my.model-v2", version=12)),
    ],
)
def test_parse_ref(uri: str, expected: MlflowRef) -> None:
    assert parse_ref(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "fraud@champion",
        "models:/fraud",
        "models:/fraud/latest",
        "models:/fraud/7/extra",
        "models:/fraud@",
        "models:/@champion",
        "runs:/abc/model",
        "s3://bucket/fraud/7",
    ],
)
def test_parse_ref_refuses_other_uris(uri: str) -> None:
    with pytest.raises(InvalidInputError, match="not an MLflow model URI"):
        parse_ref(uri)


def test_ref_prints_as_mlflow_writes_it() -> None:
    assert str(MlflowRef("fraud", version=7)) == "models:/fraud/7"
    assert str(MlflowRef("fraud", alias="champion")) == "models:/fraud@champion"
    with pytest.raises(InvalidInputError):
        MlflowRef("fraud")


@pytest.mark.parametrize(
    ("flavors", "expected"),
    [
        (
            {"python_function": {}, "onnx": {"data": "model.onnx"}},
            FlavorChoice("onnx", "model.onnx", "copy", "model.onnx"),
        ),
        (  # ONNX wins over the others when a model carries several
            {"sklearn": {"pickled_model": "m.pkl"}, "onnx": {"data": "x/model.onnx"}},
            FlavorChoice("onnx", "x/model.onnx", "copy", "model.onnx"),
        ),
        (
            {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}},
            FlavorChoice("sklearn", "model.skops", "copy", "model.skops"),
        ),
        (
            {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}},
            FlavorChoice("sklearn", "model.pkl", "pickle", "model.pkl"),
        ),
        (
            {"xgboost": {"data": "model.ubj", "model_format": "ubj"}},
            FlavorChoice("xgboost", "model.ubj", "copy", "model.ubj"),
        ),
        (
            {"xgboost": {"data": "model.json", "model_format": "json"}},
            FlavorChoice("xgboost", "model.json", "copy", "model.json"),
        ),
        (
            {"xgboost": {"data": "model.xgb"}},
            FlavorChoice("xgboost", "model.xgb", "copy", "model.ubj"),
        ),
        (
            {"lightgbm": {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"}},
            FlavorChoice("lightgbm", "model.lgb", "copy", "model.txt"),
        ),
        (
            {"lightgbm": {"data": "model.pkl", "model_class": "lightgbm.sklearn.LGBMClassifier"}},
            FlavorChoice("lightgbm", "model.pkl", "pickle", "model.pkl"),
        ),
    ],
)
def test_choose_flavor(flavors: dict[str, Any], expected: FlavorChoice) -> None:
    assert choose_flavor({"flavors": flavors}) == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "no flavors"),
        ({"flavors": "onnx"}, "no flavors"),
        ({"flavors": {"python_function": {"loader_module": "x"}}}, "found: python_function"),
        ({"flavors": {"pytorch": {}, "python_function": {}}}, "found: python_function, pytorch"),
        ({"flavors": {"onnx": {"data": 3}}}, "found: onnx"),
        ({"flavors": {"xgboost": {"data": "m.bin", "model_format": "bin"}}}, "model_format"),
    ],
)
def test_choose_flavor_refuses(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        choose_flavor(doc)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg", clock=FakeClock())
    yield reg
    reg.close()


@pytest.fixture
def mlflow(tmp_path: Path) -> FakeMlflow:
    return FakeMlflow(tmp_path / "mlflow")


def predict(registry: Registry, name: str, ref: str | None = None) -> dict[str, Any]:
    version = registry.resolve(name, ref)
    runtime = load_runtime(registry, version, Settings())
    name_in = version.manifest.signature.inputs[0].name
    dtype = version.manifest.signature.inputs[0].datatype.numpy_dtype
    return runtime.predict({name_in: X[:2].astype(dtype)})


# ---- import --------------------------------------------------------------------------------------
def test_import_onnx_version_records_where_it_came_from(
    registry: Registry, mlflow: FakeMlflow
) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes()})
    result = import_version(registry, mlflow, "models:/iris/1", alias="production")
    assert result.imported
    version = result.version
    assert (version.model, version.version, version.aliases) == ("iris", 1, ("production",))
    assert version.manifest.runtime == "onnx"
    assert version.metadata["mlflow"] == {
        "tracking_uri": "http://mlflow.test:5000",
        "name": "iris",
        "version": 1,
        "uri": "models:/iris/1",
        "source": "runs:/r1/model",
        "run_id": "r1",
        "flavor": "onnx",
    }
    assert set(predict(registry, "iris")) == {"label", "probabilities"}


def test_import_is_idempotent_and_still_moves_the_alias(
    registry: Registry, mlflow: FakeMlflow
) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes()})
    first = import_version(registry, mlflow, "models:/iris/1", name="flowers")
    again = import_version(registry, mlflow, "mlflow:/iris/1", name="flowers", alias="stable")
    assert not again.imported
    assert again.version.version == first.version.version == 1
    assert again.version.aliases == ("stable",)
    assert [v.version for v in registry.list_versions("flowers")] == [1]
    assert mlflow.downloads == 1


def test_import_by_alias_records_the_alias(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes()})
    mlflow.aliases["iris", "champion"] = 1
    result = import_version(registry, mlflow, "models:/iris@champion")
    assert result.version.metadata["mlflow"]["alias"] == "champion"
    assert result.mlflow.version == 1


def test_import_sklearn_skops(registry: Registry, mlflow: FakeMlflow, tmp_path: Path) -> None:
    flavors = {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}}
    mlflow.add("iris", flavors, {"model.skops": skops_bytes(tmp_path)})
    version = import_version(registry, mlflow, "models:/iris/1").version
    assert version.manifest.runtime == "sklearn"
    assert predict(registry, "iris")


def test_pickled_sklearn_needs_allow_pickle(registry: Registry, mlflow: FakeMlflow) -> None:
    flavors = {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}}
    blob = pickle.dumps(LogisticRegression(max_iter=500).fit(X, Y))
    mlflow.add("iris", flavors, {"model.pkl": blob})
    with pytest.raises(UnsafeArtifactError, match="allow_pickle"):
        import_version(registry, mlflow, "models:/iris/1")
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("iris")  # nothing half-imported
    version = import_version(registry, mlflow, "models:/iris/1", allow_pickle=True).version
    assert version.manifest.runtime == "sklearn"


def test_mlmodel_paths_cannot_leave_the_model(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("iris", {"onnx": {"data": "../../secret.onnx"}}, {"model.onnx": onnx_bytes()})
    with pytest.raises(InvalidInputError, match="not a file of the model"):
        import_version(registry, mlflow, "models:/iris/1")


def test_model_without_a_servable_flavor_is_refused(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("llm", {"python_function": {"loader_module": "custom"}}, {"code.py": b"x = 1"})
    with pytest.raises(InvalidInputError, match="convert the model to ONNX"):
        import_version(registry, mlflow, "models:/llm/1")


def test_unknown_mlflow_version(registry: Registry, mlflow: FakeMlflow) -> None:
    with pytest.raises(ModelNotFoundError):
        import_version(registry, mlflow, "models:/iris/3")


# ---- sync ----------------------------------------------------------------------------------------
def test_sync_follows_the_mlflow_alias(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes(0)})
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes(1)})
    mlflow.aliases["iris", "champion"] = 1

    first = sync_alias(registry, mlflow, "models:/iris@champion")
    assert (first.action, first.version.version, first.previous) == ("imported", 1, None)
    assert registry.aliases("iris") == {"production": 1}

    again = sync_alias(registry, mlflow, "models:/iris@champion")
    assert (again.action, again.version.version) == ("unchanged", 1)

    mlflow.aliases["iris", "champion"] = 2  # promoted in MLflow
    promoted = sync_alias(registry, mlflow, "models:/iris@champion")
    assert (promoted.action, promoted.version.version, promoted.previous) == ("imported", 2, 1)
    assert promoted.mlflow.version == 2
    assert registry.aliases("iris") == {"production": 2}

    mlflow.aliases["iris", "champion"] = 1  # rolled back in MLflow: no new copy
    back = sync_alias(registry, mlflow, "models:/iris@champion")
    assert (back.action, back.version.version, back.previous) == ("moved", 1, 2)
    assert [v.version for v in registry.list_versions("iris")] == [1, 2]
    assert mlflow.downloads == 2


def test_sync_into_another_name_and_alias(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes()})
    mlflow.aliases["iris", "challenger"] = 1
    result = sync_alias(
        registry, mlflow, "models:/iris@challenger", name="flowers", alias="candidate"
    )
    assert registry.aliases("flowers") == {"candidate": 1}
    assert result.version.metadata["mlflow"]["version"] == 1


def test_sync_needs_an_alias(registry: Registry, mlflow: FakeMlflow) -> None:
    with pytest.raises(InvalidInputError, match="follows an MLflow alias"):
        sync_alias(registry, mlflow, "models:/iris/1")


def test_sync_of_an_unknown_alias_changes_nothing(registry: Registry, mlflow: FakeMlflow) -> None:
    mlflow.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes()})
    import_version(registry, mlflow, "models:/iris/1", alias="production")
    with pytest.raises(ModelNotFoundError):
        sync_alias(registry, mlflow, "models:/iris@champion")
    assert registry.aliases("iris") == {"production": 1}


def _xgb_booster() -> Any:
    import xgboost

    return xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgboost.DMatrix(X, label=Y),
        num_boost_round=3,
    )


@pytest.mark.parametrize(
    ("model_format", "filename"), [("json", "model.json"), ("xgb", "model.xgb")]
)
def test_import_xgboost(
    registry: Registry, mlflow: FakeMlflow, tmp_path: Path, model_format: str, filename: str
) -> None:
    # MLflow's format "xgb" (its default) is what XGBoost >= 2 writes as UBJSON.
    path = tmp_path / ("model.ubj" if model_format == "xgb" else filename)
    _xgb_booster().save_model(path)
    flavors = {"xgboost": {"data": filename, "model_format": model_format}}
    mlflow.add("boost", flavors, {filename: path.read_bytes()})
    version = import_version(registry, mlflow, "models:/boost/1").version
    assert version.manifest.runtime == "xgboost"
    assert [f.path for f in version.manifest.files] == [
        "model.ubj" if model_format == "xgb" else "model.json"
    ]
    outputs = predict(registry, "boost")
    assert all(np.asarray(v).shape[0] == 2 for v in outputs.values())


def test_import_lightgbm_booster(registry: Registry, mlflow: FakeMlflow, tmp_path: Path) -> None:
    import lightgbm

    booster = lightgbm.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "min_data_in_leaf": 1},
        lightgbm.Dataset(X, label=Y),
        num_boost_round=3,
    )
    path = tmp_path / "model.lgb"
    booster.save_model(str(path))
    flavors = {"lightgbm": {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"}}
    mlflow.add("gbm", flavors, {"model.lgb": path.read_bytes()})
    version = import_version(registry, mlflow, "models:/gbm/1").version
    assert version.manifest.runtime == "lightgbm"
    outputs = predict(registry, "gbm")
    assert all(np.asarray(v).shape[0] == 2 for v in outputs.values())
