"""Every runtime through the same contract (see contract.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests import testmodels
from tests.unit.runtimes.contract import Built, Case, check_contract
from tests.unit.runtimes.models import SENTIMENT, TEXTS, iris_like, strings
from tests.unit.runtimes.pymodels import ScaleModel, UpperModel

NAMES = np.array(["setosa", "versicolor", "virginica"])


def _classifier(model: object, n: int = 12) -> Built:
    x, _ = iris_like()

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        data = inputs["input"]
        return {"label": model.predict(data), "probabilities": model.predict_proba(data)}  # type: ignore[attr-defined]

    return Built(model=model, inputs={"input": x[:n]}, expected=expected)


def sklearn_logreg(tmp: Path) -> Built:
    from sklearn.linear_model import LogisticRegression

    x, y = iris_like()
    return _classifier(LogisticRegression(max_iter=500).fit(x, y))


def sklearn_forest(tmp: Path) -> Built:
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris_like()
    return _classifier(RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y))


def sklearn_text(tmp: Path) -> Built:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, SENTIMENT)

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        docs = list(inputs["text"])
        return {"label": model.predict(docs), "probabilities": model.predict_proba(docs)}

    return Built(model=model, inputs={"text": strings(TEXTS)}, expected=expected)


def sklearn_ridge_fp32(tmp: Path) -> Built:
    from sklearn.linear_model import Ridge

    x, _ = iris_like()
    x32 = x.astype(np.float32)
    model = Ridge().fit(x32[:, :3], x32[:, 3])

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"prediction": model.predict(inputs["input"])}

    return Built(
        model=model,
        inputs={"input": x32[:10, :3]},
        expected=expected,
        sample={"input": x32[:2, :3]},
    )


def xgboost_classifier(tmp: Path) -> Built:
    from xgboost import XGBClassifier

    x, y = iris_like()
    return _classifier(XGBClassifier(n_estimators=5, max_depth=2).fit(x, y))


def xgboost_regressor(tmp: Path) -> Built:
    from xgboost import XGBRegressor

    x, _ = iris_like()
    model = XGBRegressor(n_estimators=5, max_depth=2).fit(x[:, :3], x[:, 3])

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"prediction": model.predict(inputs["input"])}

    return Built(model=model, inputs={"input": x[:10, :3]}, expected=expected)


def lightgbm_classifier(tmp: Path) -> Built:
    from lightgbm import LGBMClassifier

    x, y = iris_like()
    model = LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1)
    return _classifier(model.fit(x, NAMES[y]))


def python_scale(tmp: Path) -> Built:
    x, _ = iris_like()
    model = ScaleModel()

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"output": inputs["input"] * np.array([1.0, 2.0, 3.0, 4.0])}

    return Built(model=model, inputs={"input": x[:5]}, expected=expected, sample={"input": x[:2]})


def python_upper(tmp: Path) -> Built:
    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        text = list(inputs["text"])
        return {
            "upper": strings([t.decode().upper() for t in text]),
            "length": np.array([len(t) for t in text]),
        }

    return Built(model=UpperModel(), inputs={"text": strings(TEXTS, raw=True)}, expected=expected)


def onnx_linear(tmp: Path) -> Built:
    x, _ = iris_like()
    path = testmodels.linear_fp32_model(tmp / "linear.onnx", n_features=4)

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"output": inputs["input"].sum(axis=1, keepdims=True)}

    return Built(model=str(path), inputs={"input": x[:7].astype(np.float32)}, expected=expected)


def onnx_strings(tmp: Path) -> Built:
    path = testmodels.identity_model(Datatype.BYTES, tmp / "identity.onnx")
    table = np.array([strings(TEXTS[:3]), strings(TEXTS[3:])]).T  # shape [3, 2]
    return Built(model=path, inputs={"INPUT0": table}, expected=lambda i: {"OUTPUT0": i["INPUT0"]})


def onnx_converted(tmp: Path) -> Built:
    from sklearn.linear_model import LogisticRegression

    from modelyard.convert import to_onnx

    x, y = iris_like()
    original = LogisticRegression(max_iter=500).fit(x, y)
    built = _classifier(original)
    return Built(model=to_onnx(original, x).model, inputs=built.inputs, expected=built.expected)


_LABELS = np.array(["setosa", "versicolor", "virginica"])


def pipeline_tabular(tmp: Path) -> Built:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from modelyard.runtimes.pipeline import Pipeline

    x, _ = iris_like()
    x = x.astype(np.float32)
    w = (np.arange(12, dtype=np.float32).reshape(4, 3) - 6) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["b", 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp / "linear.onnx"))
    mean, std = x.mean(axis=0), x.std(axis=0)
    pipeline = Pipeline(
        steps=[
            {"op": "scale", "mean": mean.tolist(), "std": std.tolist()},
            {"op": "onnx", "file": "model.onnx"},
            {"op": "label_map", "input": "scores", "output": "label", "labels": list(_LABELS)},
        ],
        files={"model.onnx": tmp / "linear.onnx"},
        signature=Signature(
            inputs=(TensorSpec(name="input", datatype=Datatype.FP32, shape=(-1, 4)),),
            outputs=(
                TensorSpec(name="label", datatype=Datatype.BYTES, shape=(-1,)),
                TensorSpec(name="scores", datatype=Datatype.FP32, shape=(-1, 3)),
            ),
        ),
    )

    def expected(inputs: Mapping[str, Array]) -> dict[str, Array]:
        scores = ((inputs["input"] - mean) / std).astype(np.float32) @ w
        return {"label": _LABELS[scores.argmax(axis=1)], "scores": scores}

    return Built(model=pipeline, inputs={"input": x[:12]}, expected=expected)


CASES = [
    Case("sklearn-logreg", "sklearn", sklearn_logreg),
    Case("sklearn-forest", "sklearn", sklearn_forest),
    Case("sklearn-text", "sklearn", sklearn_text),
    Case("sklearn-ridge-fp32", "sklearn", sklearn_ridge_fp32, atol=1e-6),
    Case("xgboost-classifier", "xgboost", xgboost_classifier, atol=1e-7),
    Case("xgboost-regressor", "xgboost", xgboost_regressor, atol=1e-7),
    Case("lightgbm-classifier", "lightgbm", lightgbm_classifier),
    Case("python-scale", "python", python_scale),
    Case("python-upper", "python", python_upper),
    Case("onnx-linear", "onnx", onnx_linear, atol=1e-5),
    Case("onnx-strings", "onnx", onnx_strings),
    Case("onnx-converted", "onnx", onnx_converted, atol=1e-5),
    Case("pipeline-tabular", "pipeline", pipeline_tabular, atol=1e-5),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_runtime_contract(case: Case, tmp_path: Path) -> None:
    check_contract(case, tmp_path)


def test_every_builtin_kind_has_a_contract_case() -> None:
    from modelyard.runtimes import known_kinds

    assert {c.kind for c in CASES} == set(known_kinds())
