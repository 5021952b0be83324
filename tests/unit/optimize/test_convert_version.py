"""Converting registry versions to ONNX: real models in a temporary registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from xgboost import XGBClassifier

from modelyard.app import runtime_options
from modelyard.cli_predict import load_runtime
from modelyard.errors import FailedPreconditionError
from modelyard.manifest import Manifest
from modelyard.optimize.converting import Converted, ParityError, convert_version
from modelyard.optimize.estimators import check_convertible
from modelyard.registry import Registry
from modelyard.registry.records import ModelVersion
from modelyard.runtime import warmup_inputs
from modelyard.settings import Settings
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.unit.runtimes.models import SENTIMENT, TEXTS, iris_like

X, Y = iris_like()


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "reg") as registry:
        yield registry


def _convert(reg: Registry, ref: str, **kwargs: object) -> Converted:
    name, _, number = ref.partition(":")
    settings = Settings()
    return convert_version(
        reg,
        reg.get_version(name, int(number)),
        runtime_options(settings),
        load=lambda v: load_runtime(reg, v, settings),
        **kwargs,  # type: ignore[arg-type]
    )


def _predict(reg: Registry, version: ModelVersion, rows: Array) -> dict[str, Array]:
    runtime = load_runtime(reg, version, Settings())
    try:
        return runtime.predict({"input": rows})
    finally:
        runtime.unload()


def test_logistic_regression_becomes_an_onnx_version_that_predicts_the_same(
    reg: Registry,
) -> None:
    source = reg.push(LogisticRegression(max_iter=500).fit(X, Y), name="iris", sample=X[:3])
    done = _convert(reg, "iris:1", alias="fast")

    pushed = reg.get_version("iris", done.pushed.version)
    assert pushed.version == 2
    assert pushed.manifest.runtime == "onnx"
    assert reg.aliases("iris") == {"fast": 2}
    assert pushed.metadata["converted_from"] == "iris:1"
    assert pushed.metadata["source_runtime"] == "sklearn"
    assert pushed.metadata["parity"]["sample"] == "warm-up example, 1 row"
    assert pushed.metadata["parity"]["outputs"]["label"]["agreement"] == 1.0
    assert pushed.metadata["parity"]["max_abs_diff"] <= 1e-4
    assert pushed.manifest.signature.inputs == source.manifest.signature.inputs
    for name, arr in warmup_inputs(source.manifest).items():  # the warm-up example is kept
        np.testing.assert_array_equal(warmup_inputs(pushed.manifest)[name], arr)

    before, after = _predict(reg, source, X), _predict(reg, pushed, X)
    np.testing.assert_array_equal(after["label"], before["label"])
    np.testing.assert_allclose(after["probabilities"], before["probabilities"], atol=1e-5)


@pytest.mark.parametrize(
    ("model", "labels"),
    [
        (XGBClassifier(n_estimators=5, max_depth=2), Y),
        (LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1), Y),
        (
            LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1),
            np.array(["setosa", "versicolor", "virginica"])[Y],
        ),
        (LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1), X[:, 0] * 2.0),
    ],
    ids=["xgboost", "lightgbm", "lightgbm-string-labels", "lightgbm-regressor"],
)
def test_boosters_are_rebuilt_and_converted(reg: Registry, model: object, labels: Array) -> None:
    fitted = model.fit(X.astype(np.float32), labels)  # type: ignore[attr-defined]
    source = reg.push(fitted, name="boost", sample=X[:2].astype(np.float32))
    done = _convert(reg, "boost:1", sample_mode="random", rows=32)
    assert done.parity.rows == 32
    assert done.sample.source == "random rows (seed 0)"
    before = _predict(reg, source, X.astype(np.float32))
    after = _predict(reg, done.pushed, X.astype(np.float32))
    for name, arr in before.items():
        if arr.dtype.kind == "f":
            np.testing.assert_allclose(after[name], arr, atol=1e-4)
        else:
            np.testing.assert_array_equal(after[name], arr)


def test_random_rows_when_the_version_has_no_warmup_example(reg: Registry) -> None:
    reg.push(LogisticRegression(max_iter=500).fit(X, Y), name="iris")
    done = _convert(reg, "iris:1", rows=16)
    assert done.sample.describe() == "random rows (seed 0), 16 rows"
    assert reg.get_version("iris", 2).manifest.warmup is None  # none invented


def test_an_onnx_version_is_refused(reg: Registry) -> None:
    reg.push(LogisticRegression(max_iter=500).fit(X, Y), name="iris", sample=X[:3])
    _convert(reg, "iris:1")
    with pytest.raises(FailedPreconditionError, match="iris:2 is already ONNX"):
        _convert(reg, "iris:2")
    assert len(reg.list_versions("iris")) == 2


def test_parity_beyond_atol_pushes_nothing(reg: Registry) -> None:
    # FP64 probabilities computed in float32 by ONNX differ by ~1e-8: not within atol 0.
    reg.push(LogisticRegression(max_iter=500).fit(X, Y), name="iris", sample=X[:3])
    with pytest.raises(ParityError, match=r"output 'probabilities': max abs diff .* > 0; nothing"):
        _convert(reg, "iris:1", atol=0.0)
    assert [v.version for v in reg.list_versions("iris")] == [1]


def _version(runtime: str, *inputs: TensorSpec) -> ModelVersion:
    manifest = Manifest(runtime=runtime, signature=Signature(inputs=inputs))
    return ModelVersion(model="m", version=1, manifest=manifest, artifact_uri="x", created_at=0)


ROWS = TensorSpec(name="input", datatype=Datatype.FP64, shape=(-1, 4))


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (_version("onnx", ROWS), "m:1 is already ONNX"),
        (_version("python", ROWS), "is a 'python' version; convert takes sklearn"),
        (_version("sklearn", ROWS, ROWS.model_copy(update={"name": "b"})), "has 2 inputs"),
        (_version("sklearn", ROWS.model_copy(update={"name": "x"})), "input is named 'x'"),
        (
            _version("sklearn", TensorSpec(name="input", datatype=Datatype.BYTES, shape=(-1,))),
            "is BYTES",
        ),
        (_version("xgboost", ROWS.model_copy(update={"datatype": Datatype.INT64})), "INT64"),
    ],
)
def test_what_cannot_be_converted(version: ModelVersion, message: str) -> None:
    with pytest.raises(FailedPreconditionError, match=message):
        check_convertible(version)
    check_convertible(_version("sklearn", ROWS))  # the shape convert takes


def test_a_text_pipeline_version_is_refused_before_any_work(reg: Registry) -> None:
    pipe = make_pipeline(CountVectorizer(), LogisticRegression()).fit(TEXTS, SENTIMENT)
    reg.push(pipe, name="sentiment", sample=np.array(TEXTS[:2], dtype=object))
    with pytest.raises(FailedPreconditionError, match="text pipelines stay sklearn"):
        _convert(reg, "sentiment:1")
