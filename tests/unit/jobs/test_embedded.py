"""``modelyard.load``: an in-process predictor over the serving core, no server, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelyard
from modelyard.embedded import Predictor
from modelyard.errors import InvalidInputError, ModelNotFoundError, UnavailableError
from modelyard.registry.registry import Registry
from modelyard.types import InferRequest
from tests.testmodels import simple_model


def scale_model(path: Path, factor: float) -> Path:
    """x FP32 [-1, 2] -> y FP32 [-1, 2] = factor * x."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[helper.make_tensor("k", TensorProto.FLOAT, [], [factor])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def registry_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "registry"
    with Registry(root) as registry:
        registry.push(scale_model(tmp_path / "one.onnx", 1.0), name="scale", alias="production")
        registry.push(
            scale_model(tmp_path / "two.onnx", 2.0),
            name="scale",
            batching={"max_batch_size": 16, "max_wait_us": 500},
        )
        registry.push(simple_model(tmp_path / "simple.onnx"), name="simple")
    yield root


@pytest.fixture
def scale(registry_dir: Path) -> Iterator[Predictor]:
    with modelyard.load("scale@production", registry=str(registry_dir)) as predictor:
        yield predictor


X = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)


def test_load_is_public_api() -> None:
    assert modelyard.load is modelyard.embedded.load  # type: ignore[attr-defined]


def test_predict_with_arrays_lists_and_a_bare_array(scale: Predictor) -> None:
    assert scale.version == 1
    np.testing.assert_array_equal(scale.predict({"x": X})["y"], X)
    np.testing.assert_array_equal(scale.predict({"x": [[5, 6]]})["y"], [[5.0, 6.0]])
    np.testing.assert_array_equal(scale.predict(X)["y"], X)
    assert scale.signature.inputs[0].name == "x"
    assert repr(scale) == "Predictor(scale@production)"


def test_infer_says_which_version_served(scale: Predictor) -> None:
    response = scale.infer(InferRequest(inputs={"x": X}))
    assert (response.model_name, response.model_version) == ("scale", "1")


def test_checks_are_the_servers(scale: Predictor) -> None:
    with pytest.raises(
        InvalidInputError, match="input 'x' has datatype FP64; the model expects FP32"
    ):
        scale.predict({"x": X.astype(np.float64)})
    with pytest.raises(InvalidInputError, match="unexpected input 'z'"):
        scale.predict({"x": X, "z": X})
    with pytest.raises(InvalidInputError, match="requested output 'nope' does not exist"):
        scale.predict(X, outputs=["nope"])
    with pytest.raises(InvalidInputError, match="contains NaN or Inf"):
        scale.predict(np.array([[np.nan, 1.0]], dtype=np.float32))


def test_a_multi_input_model_needs_a_dict(registry_dir: Path) -> None:
    with modelyard.load("simple", registry=str(registry_dir)) as simple:
        with pytest.raises(
            InvalidInputError, match="has 2 inputs \\(INPUT0, INPUT1\\): pass a dict"
        ):
            simple.predict(np.zeros((1, 16), np.int32))
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        out = simple.predict({"INPUT0": a, "INPUT1": a})
        np.testing.assert_array_equal(out["OUTPUT0"], a * 2)


def test_apredict_from_another_loop_shares_one_batcher(registry_dir: Path) -> None:
    with modelyard.load("scale:2", registry=str(registry_dir)) as two:

        async def many() -> list[dict[str, np.ndarray]]:
            rows = [np.full((1, 2), i, dtype=np.float32) for i in range(40)]
            return await asyncio.gather(*(two.apredict(r) for r in rows))

        results = asyncio.run(many())
        for i, out in enumerate(results):
            np.testing.assert_array_equal(out["y"], [[2.0 * i, 2.0 * i]])
        batchers = two._app.serving._batchers  # the serving core's own batcher did the work
        ((_, batcher),) = batchers.values()
        assert batcher.stats.requests == 40 and batcher.stats.batches < 40


def test_alias_moves_are_followed_and_versions_are_pinned(registry_dir: Path) -> None:
    root = str(registry_dir)
    with (
        modelyard.load("scale@production", registry=root, resolve_ttl_s=0) as follows,
        modelyard.load("scale:1", registry=root, resolve_ttl_s=0) as pinned,
    ):
        np.testing.assert_array_equal(follows.predict(X)["y"], X)
        with Registry(registry_dir) as registry:
            registry.set_alias("scale", "production", 2)
        np.testing.assert_array_equal(follows.predict(X)["y"], X * 2)
        assert follows.version == 2
        np.testing.assert_array_equal(pinned.predict(X)["y"], X)


def test_errors_at_load(registry_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        modelyard.load("nope", registry=str(registry_dir))
    with pytest.raises(InvalidInputError, match="NAME@ALIAS or NAME:VERSION"):
        modelyard.load("a:b:c", registry=str(registry_dir))
    with pytest.raises(InvalidInputError, match="setting 'cache_bytes'"):
        modelyard.load("scale", registry=str(registry_dir), cache_bytes=0)


def test_closed_predictor_refuses(registry_dir: Path) -> None:
    predictor = modelyard.load("scale", registry=str(registry_dir))
    predictor.close()
    predictor.close()
    with pytest.raises(UnavailableError, match="closed"):
        predictor.predict(X)


def test_settings_object_with_overrides(registry_dir: Path) -> None:
    settings = modelyard.Settings(registry=str(registry_dir))
    with modelyard.load("scale:2", settings=settings, inference_threads=1) as two:
        assert two._app.settings.inference_threads == 1
        np.testing.assert_array_equal(two.predict(X)["y"], X * 2)


def test_a_request_larger_than_the_batchers_queue_runs_directly(registry_dir: Path) -> None:
    """Batch jobs send big requests to models with batching on: they skip the queue."""
    with modelyard.load("scale:2", registry=str(registry_dir)) as two:
        x = np.ones((10_000, 2), dtype=np.float32)
        np.testing.assert_array_equal(two.predict(x)["y"], x * 2)
