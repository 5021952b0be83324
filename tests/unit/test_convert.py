"""Conversion to ONNX: parity with the original model, signature shaped like the native runtimes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from xgboost import XGBClassifier, XGBRegressor

from modelyard.convert import ConversionResult, to_onnx
from modelyard.errors import InvalidInputError, MissingDependencyError
from modelyard.runtimes.onnx import signature_of
from modelyard.types import Datatype
from tests.unit.runtimes.models import iris_like

X, Y = iris_like()


def _classifiers() -> dict[str, object]:
    return {
        "logreg": LogisticRegression(max_iter=500).fit(X, Y),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y),
        "xgboost": XGBClassifier(n_estimators=5, max_depth=2).fit(X, Y),
        "lightgbm": LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1).fit(X, Y),
    }


@pytest.fixture(scope="module")
def classifiers() -> dict[str, object]:
    return _classifiers()


@pytest.mark.parametrize("name", ["logreg", "forest", "xgboost", "lightgbm"])
def test_classifiers_convert_with_parity(classifiers: dict[str, object], name: str) -> None:
    result = to_onnx(classifiers[name], X, name=f"iris-{name}")
    parity = result.parity
    assert parity["rows"] == len(X)
    assert parity["max_abs_diff"] < 1e-4
    assert parity["label_match_rate"] == 1.0
    assert result.agrees()
    json.dumps(result.metadata)  # a plain dict the registry can store
    assert result.model.graph.name == f"iris-{name}"

    signature, left_out = signature_of(result.model)
    assert left_out == []
    assert [(i.name, i.datatype, i.shape) for i in signature.inputs] == [
        ("input", Datatype.FP64, (-1, 4))
    ]
    assert [(o.name, o.shape) for o in signature.outputs] == [
        ("label", (-1,)),
        ("probabilities", (-1, 3)),
    ]


def test_xgboost_opset_is_capped(classifiers: dict[str, object]) -> None:
    result = to_onnx(classifiers["xgboost"], X, target_opset=18)
    assert result.metadata["opsets"]["ai.onnx"] <= 15


def test_regressors_give_a_flat_prediction() -> None:
    for model in (
        LinearRegression().fit(X[:, :3], X[:, 3]),
        XGBRegressor(n_estimators=5, max_depth=2).fit(X[:, :3], X[:, 3]),
    ):
        result = to_onnx(model, X[:, :3])
        assert result.parity["max_abs_diff"] < 1e-4
        assert "label_match_rate" not in result.parity
        outputs = signature_of(result.model)[0].outputs
        assert [(o.name, o.shape) for o in outputs] == [("prediction", (-1,))]


def test_string_labels_and_label_only_classifiers() -> None:
    from sklearn.linear_model import RidgeClassifier

    names = np.array(["setosa", "versicolor", "virginica"])[Y]
    result = to_onnx(RidgeClassifier().fit(X, names), X)  # no predict_proba
    assert result.parity["label_match_rate"] == 1.0
    (label,) = signature_of(result.model)[0].outputs
    assert (label.name, label.datatype) == ("label", Datatype.BYTES)


def test_float32_sample_keeps_fp32_input(classifiers: dict[str, object]) -> None:
    result = to_onnx(classifiers["logreg"], {"input": X.astype(np.float32)})
    assert signature_of(result.model)[0].inputs[0].datatype is Datatype.FP32
    assert result.agrees(atol=1e-4)


def test_result_round_trips_through_a_file(classifiers: dict[str, object], tmp_path: Path) -> None:
    result = to_onnx(classifiers["forest"], X)
    path = result.save(tmp_path / "forest.onnx")
    assert onnx.load(str(path)) == result.model
    assert isinstance(result, ConversionResult)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (X[0], "2-D"),
        (X[:0], "2-D array with rows"),
        (np.array([["a", "b"]]), "numeric features only"),
    ],
)
def test_bad_samples_are_refused(
    classifiers: dict[str, object], sample: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        to_onnx(classifiers["logreg"], sample)


def test_unconvertible_models_are_refused() -> None:
    class Thing:
        def predict(self, x: np.ndarray) -> np.ndarray:
            return x[:, 0]

    with pytest.raises(InvalidInputError, match="cannot convert Thing"):
        to_onnx(Thing(), X)


def test_missing_converter_gives_install_hint(
    classifiers: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(MissingDependencyError, match=r"modelyard\[sklearn\]"):
        to_onnx(classifiers["logreg"], X)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)
    with pytest.raises(MissingDependencyError, match=r"modelyard\[lightgbm\]"):
        to_onnx(classifiers["lightgbm"], X)
