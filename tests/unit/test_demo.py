"""The demo models: created once, and each one answers sensibly in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelyard.cli_predict import predict
from modelyard.demo import DEMO_MODELS, IRIS_SIGNATURE, SIMPLE_SIGNATURE, ensure_demo_models
from modelyard.registry.registry import Registry
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.runtimes import get_runtime_class
from modelyard.types import Datatype


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("demo") / "registry")
    assert ensure_demo_models(reg) == list(DEMO_MODELS)
    yield reg
    reg.close()


def _runtime(registry: Registry, name: str) -> Runtime:
    mv = registry.resolve(name, "production")
    runtime = get_runtime_class(mv.manifest.runtime)(
        registry.fetch(mv), mv.manifest, RuntimeOptions()
    )
    runtime.load()
    return runtime


def _run(registry: Registry, name: str, payload: dict[str, Any]) -> dict[str, np.ndarray]:
    runtime = _runtime(registry, name)
    try:
        return predict(runtime, payload, ref=name)
    finally:
        runtime.unload()


def test_second_call_creates_nothing(registry: Registry) -> None:
    before = {m.name: m.latest_version for m in registry.list_models()}
    assert ensure_demo_models(registry) == ["iris", "diabetes", "sentiment", "simple"]
    after = {m.name: m.latest_version for m in registry.list_models()}
    assert before == after == {name: 1 for name in DEMO_MODELS}
    for name in DEMO_MODELS:
        assert registry.aliases(name) == {"production": 1}
        assert registry.resolve(name, None).metadata["demo"] is True


def test_iris_is_onnx_and_classifies_iris_flowers(registry: Registry) -> None:
    mv = registry.resolve("iris", None)
    assert mv.manifest.runtime == "onnx"
    assert mv.manifest.signature == IRIS_SIGNATURE
    out = _run(registry, "iris", {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert out["label"].tolist() == [0, 2]
    assert out["probabilities"].dtype == np.float32
    assert out["probabilities"].shape == (2, 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_diabetes_is_native_sklearn_and_predicts_in_range(registry: Registry) -> None:
    from sklearn.datasets import load_diabetes

    mv = registry.resolve("diabetes", None)
    assert mv.manifest.runtime == "sklearn"
    (spec,) = mv.manifest.signature.inputs
    assert (spec.name, spec.datatype, spec.shape) == ("input", Datatype.FP64, (-1, 10))
    x, y = load_diabetes(return_X_y=True)
    out = _run(registry, "diabetes", {"input": x[:20].tolist()})
    pred = out["prediction"].reshape(-1)
    assert pred.shape == (20,)
    assert ((pred > 0) & (pred < 400)).all()
    assert np.corrcoef(pred, y[:20])[0, 1] > 0.5


def test_sentiment_reads_text(registry: Registry) -> None:
    mv = registry.resolve("sentiment", None)
    assert mv.manifest.runtime == "sklearn"
    (spec,) = mv.manifest.signature.inputs
    assert (spec.name, spec.datatype, spec.shape) == ("text", Datatype.BYTES, (-1,))
    out = _run(
        registry,
        "sentiment",
        {"text": ["I love it, wonderful and great value", "terrible and awful, I hate it"]},
    )
    labels = [v.decode() if isinstance(v, bytes) else v for v in out["label"].tolist()]
    assert labels == ["positive", "negative"]


def test_simple_adds_and_subtracts_int32(registry: Registry) -> None:
    assert registry.resolve("simple", None).manifest.signature == SIMPLE_SIGNATURE
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    out = _run(registry, "simple", {"INPUT0": a.tolist(), "INPUT1": b.tolist()})
    assert out["OUTPUT0"].dtype == np.int32
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
