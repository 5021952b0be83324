"""Tiny real models for the optimisation tests: an MLP-like ONNX graph whose time and size are in
MatMul weights (what dynamic quantisation shrinks), and a registry with scikit-learn models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 64
HIDDEN = 256
CLASSES = 4


def matmul_classifier(path: Path, *, seed: int = 0) -> Path:
    """``input`` [N, 64] -> MatMul 64x256 -> Relu -> MatMul 256x256 -> Relu -> MatMul 256x4 ->
    ``probabilities`` (Softmax) and ``label`` (ArgMax, INT64). About 330 kB of float weights."""
    rng = np.random.default_rng(seed)
    shapes = {"w1": (FEATURES, HIDDEN), "w2": (HIDDEN, HIDDEN), "w3": (HIDDEN, CLASSES)}
    weights = [
        numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name
        )
        for name, shape in shapes.items()
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", FEATURES])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", CLASSES]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def mostly_float(path: Path) -> Path:
    """Most bytes in a constant no quantiser touches (summed by ReduceSum), a little in a MatMul:
    ``input`` [N, 64] -> MatMul 64x4 -> + ReduceSum(C [4096, 4]) -> ``output``."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((FEATURES, 4)).astype(np.float32), "w")
    table = numpy_helper.from_array(rng.standard_normal((4096, 4)).astype(np.float32) / 64, "c")
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["h"]),
            helper.make_node("ReduceSum", ["c", "axes"], ["bias"], keepdims=1),
            helper.make_node("Add", ["h", "bias"], ["output"]),
        ],
        "mostly_float",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])],
        [weight, table, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path
