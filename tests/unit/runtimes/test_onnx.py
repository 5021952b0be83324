"""ONNX runtime: signature from the graph, session options, providers, input handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from modelyard.errors import InferenceError, InvalidInputError
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes.onnx import OnnxRuntime, choose_providers, signature_of
from modelyard.types import Datatype
from tests import testmodels
from tests.unit.runtimes.models import iris_like, manifest_for, save_and_load, strings


def _graph_model(
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    nodes: list[onnx.NodeProto],
    **kw: object,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, **kw)  # type: ignore[arg-type]
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_signature_maps_types_and_dims() -> None:
    model = _graph_model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 3, None])],
        [helper.make_node("Identity", ["x"], ["y"])],
    )
    signature, left_out = signature_of(model)
    (spec,) = signature.inputs
    assert (spec.name, spec.datatype, spec.shape) == ("x", Datatype.FP16, (-1, 3, -1))
    assert left_out == []


def test_weights_listed_as_inputs_are_not_inputs() -> None:
    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    model = _graph_model(
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        initializer=[w],
    )
    assert [i.name for i in signature_of(model)[0].inputs] == ["x"]


def test_unsupported_element_type_is_named() -> None:
    model = _graph_model(
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["n"])],
        [helper.make_node("Identity", ["x"], ["y"])],
    )
    with pytest.raises(InvalidInputError, match=r"input 'x'.*BFLOAT16"):
        signature_of(model)


def test_zipmap_outputs_are_left_out(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris_like()
    model = LogisticRegression(max_iter=500).fit(x, y)
    proto = to_onnx(model, x[:1].astype(np.float32))  # ZipMap on: probabilities are seq(map)
    saved = OnnxRuntime.save(proto, tmp_path, sample=None)
    assert saved.signature is not None
    assert [o.name for o in saved.signature.outputs] == ["output_label"]
    assert saved.metadata["outputs_left_out"] == ["output_probability"]
    runtime = save_and_load(proto, tmp_path / "v")
    got = runtime.predict({"X": x[:3].astype(np.float32)})
    np.testing.assert_array_equal(got["output_label"], model.predict(x[:3]))


def test_unavailable_providers_fall_back_to_cpu(tmp_path: Path) -> None:
    assert choose_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers([]) == ["CPUExecutionProvider"]
    options = RuntimeOptions(
        execution_providers=("CUDAExecutionProvider", "TensorrtExecutionProvider")
    )
    runtime = save_and_load(
        testmodels.linear_fp32_model(tmp_path / "m.onnx"), tmp_path / "v", options=options
    )
    assert runtime.providers == ["CPUExecutionProvider"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_session_options_are_applied(tmp_path: Path, level: str) -> None:
    options = RuntimeOptions(intra_op_threads=2, inter_op_threads=1, graph_optimization_level=level)
    runtime = save_and_load(
        testmodels.linear_fp32_model(tmp_path / "m.onnx", 3), tmp_path / "v", options=options
    )
    got = runtime.predict({"input": np.ones((2, 3), dtype=np.float32)})
    np.testing.assert_array_equal(got["output"], [[3.0], [3.0]])


def test_unknown_optimization_level_is_named(tmp_path: Path) -> None:
    options = RuntimeOptions(graph_optimization_level="max")
    with pytest.raises(InvalidInputError, match="graph_optimization_level 'max'"):
        save_and_load(
            testmodels.linear_fp32_model(tmp_path / "m.onnx"), tmp_path / "v", options=options
        )


def test_inputs_are_widened_safely_but_never_narrowed(tmp_path: Path) -> None:
    runtime = save_and_load(
        testmodels.identity_model(Datatype.INT64, tmp_path / "i.onnx"), tmp_path / "v"
    )
    got = runtime.predict({"INPUT0": np.array([[1, 2]], dtype=np.int32)})
    assert got["OUTPUT0"].dtype == np.int64
    linear = save_and_load(testmodels.linear_fp32_model(tmp_path / "m.onnx", 2), tmp_path / "w")
    with pytest.raises(InvalidInputError, match="'input' has datatype FP64; the model takes FP32"):
        linear.predict({"input": np.ones((1, 2))})


def test_bytes_strings_are_decoded(tmp_path: Path) -> None:
    runtime = save_and_load(
        testmodels.identity_model(Datatype.BYTES, tmp_path / "s.onnx"), tmp_path / "v"
    )
    got = runtime.predict({"INPUT0": strings(["a", "é"], raw=True).reshape(1, 2)})
    assert got["OUTPUT0"].tolist() == [["a", "é"]]


def test_requested_outputs_only(tmp_path: Path) -> None:
    runtime = save_and_load(testmodels.simple_model(tmp_path / "simple.onnx"), tmp_path / "v")
    ones = np.ones((1, 16), dtype=np.int32)
    got = runtime.predict({"INPUT0": ones, "INPUT1": ones}, outputs=["OUTPUT1"])  # type: ignore[call-arg]
    assert list(got) == ["OUTPUT1"]
    assert not got["OUTPUT1"].any()


def test_inputs_that_disagree_on_a_named_dimension_are_client_errors(tmp_path: Path) -> None:
    # simple: INPUT0 and INPUT1 are both ['batch', 16]. Found by the server fuzz test: ORT
    # accepted the inputs and failed inside the graph, which read as a broken model (a 500).
    runtime = save_and_load(testmodels.simple_model(tmp_path / "simple.onnx"), tmp_path / "v")
    two, three = np.ones((2, 16), dtype=np.int32), np.ones((3, 16), dtype=np.int32)
    with pytest.raises(InvalidInputError, match=r"dimension 'batch'.*'INPUT0' axis 0 = 2"):
        runtime.predict({"INPUT0": two, "INPUT1": three})
    assert runtime.predict({"INPUT0": two, "INPUT1": two})["OUTPUT0"].shape == (2, 16)


def test_engine_errors_are_inference_errors(tmp_path: Path) -> None:
    runtime = save_and_load(testmodels.linear_fp32_model(tmp_path / "m.onnx", 4), tmp_path / "v")
    with pytest.raises(InferenceError, match="onnx runtime"):
        runtime.predict({"input": np.ones((1, 3), dtype=np.float32)})
    with pytest.raises(InvalidInputError, match="'input' is missing"):
        runtime.predict({})


def test_external_data_travels_with_the_model(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 1), dtype=np.float32), "W")  # raw_data
    model = _graph_model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1])],
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        initializer=[weights],
    )
    src = tmp_path / "src" / "m.onnx"
    src.parent.mkdir()
    onnx.save_model(
        model, str(src), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    assert (tmp_path / "src" / "weights.bin").is_file()
    runtime = save_and_load(src, tmp_path / "v")
    assert (tmp_path / "v" / "weights.bin").is_file()
    assert runtime.memory_bytes() >= (tmp_path / "v" / "model.onnx").stat().st_size
    got = runtime.predict({"input": np.ones((1, 4), dtype=np.float32)})
    np.testing.assert_array_equal(got["output"], [[4.0]])


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 1), dtype=np.float32), "W")
    model = _graph_model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1])],
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        initializer=[weights],
    )
    external_data_helper.set_external_data(weights, location="../secret.bin")
    model.graph.initializer[0].CopyFrom(weights)
    model.graph.initializer[0].data_location = TensorProto.EXTERNAL
    model.graph.initializer[0].ClearField("raw_data")
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidInputError, match="leaves the model folder"):
        OnnxRuntime.save(src, tmp_path / "v", sample=None)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf \xff\xfe")
    with pytest.raises(InvalidInputError, match=r"bad\.onnx: not a readable ONNX model"):
        OnnxRuntime.save(bad, tmp_path / "v", sample=None)


def test_predict_before_load_is_an_error(tmp_path: Path) -> None:
    from modelyard.errors import FailedPreconditionError

    saved = OnnxRuntime.save(
        testmodels.linear_fp32_model(tmp_path / "m.onnx"), tmp_path / "v", sample=None
    )
    runtime = OnnxRuntime(
        tmp_path / "v", manifest_for("onnx", saved, tmp_path / "v"), RuntimeOptions()
    )
    with pytest.raises(FailedPreconditionError, match="before load"):
        runtime.predict({})


def test_graph_onnx_runtime_rejects_is_a_load_error(tmp_path: Path) -> None:
    from modelyard.errors import FailedPreconditionError

    model = _graph_model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
    )
    saved = OnnxRuntime.save(model, tmp_path, sample=None)
    runtime = OnnxRuntime(tmp_path, manifest_for("onnx", saved, tmp_path), RuntimeOptions())
    with pytest.raises(FailedPreconditionError, match="cannot create a session"):
        runtime.load()
