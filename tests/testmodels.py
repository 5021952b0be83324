"""Tiny ONNX models built in code, shared by unit, conformance and e2e tests.

* ``simple``: INPUT0, INPUT1 INT32 [-1, 16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
  (the shape of Triton's classic ``simple`` example, so tritonclient examples work unchanged).
* ``identity_<dtype>`` for every V2 datatype (lower-case name, e.g. ``identity_fp32``,
  ``identity_bytes``): INPUT0 [-1, -1] -> OUTPUT0, an exact copy.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from modelyard.demo import simple_model_bytes
from modelyard.types import Datatype

ONNX_TYPES: dict[Datatype, int] = {
    Datatype.BOOL: TensorProto.BOOL,
    Datatype.UINT8: TensorProto.UINT8,
    Datatype.UINT16: TensorProto.UINT16,
    Datatype.UINT32: TensorProto.UINT32,
    Datatype.UINT64: TensorProto.UINT64,
    Datatype.INT8: TensorProto.INT8,
    Datatype.INT16: TensorProto.INT16,
    Datatype.INT32: TensorProto.INT32,
    Datatype.INT64: TensorProto.INT64,
    Datatype.FP16: TensorProto.FLOAT16,
    Datatype.FP32: TensorProto.FLOAT,
    Datatype.FP64: TensorProto.DOUBLE,
    Datatype.BYTES: TensorProto.STRING,
}
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def simple_model(path: Path) -> Path:
    """Triton's ``simple``: sum and difference of two INT32 [-1, 16] tensors (the demo's model)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(simple_model_bytes())
    return path


def identity_model(datatype: Datatype, path: Path) -> Path:
    """INPUT0 -> OUTPUT0 unchanged, for one datatype, shape [-1, -1]."""
    t = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.value.lower()}",
        [helper.make_tensor_value_info("INPUT0", t, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", "n"])],
    )
    return _save(graph, path)


def linear_fp32_model(path: Path, n_features: int = 20) -> Path:
    """input FP32 [-1, n_features] -> output FP32 [-1, 1] = sum of features (a tiny regressor)."""
    import numpy as np

    w = helper.make_tensor(
        "W", TensorProto.FLOAT, [n_features, 1], np.ones(n_features, dtype=np.float32).tolist()
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        initializer=[w],
    )
    return _save(graph, path)


def all_test_models(directory: Path) -> dict[str, Path]:
    """Build every model above into ``directory``; returns name -> .onnx path."""
    out = {"simple": simple_model(directory / "simple.onnx")}
    out["linear"] = linear_fp32_model(directory / "linear.onnx")
    for dt in Datatype:
        name = f"identity_{dt.value.lower()}"
        out[name] = identity_model(dt, directory / f"{name}.onnx")
    return out
