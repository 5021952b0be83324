"""Convert classic models to ONNX, and measure how closely the result agrees with the original.

Why: on one core a scikit-learn LogisticRegression answers one row in ~570 µs, the same model in
ONNX Runtime in ~25 µs. :func:`to_onnx` converts scikit-learn (skl2onnx), XGBoost and LightGBM
(onnxmltools) models and shapes the graph like the native runtimes' signatures, so a converted
version can take traffic beside the original:

* one input ``input`` [-1, n_features] in the sample's float type (FP64 is cast to FP32 inside the
  graph, the precision the converters work in);
* classifiers: ``label`` [-1] (the original's label type) and ``probabilities`` [-1, n_classes],
  without ZipMap; regressors: ``prediction`` [-1] (or [-1, n_targets]); floats in the original's
  output type.

``result.metadata["parity"]`` says how close it is on the sample: ``max_abs_diff`` of
probabilities (classifiers) or predictions (regressors), and ``label_match_rate`` for classifiers.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from modelyard.errors import InvalidInputError, MissingDependencyError, install_hint
from modelyard.types import Array

INPUT = "input"
XGBOOST_MAX_OPSET = 15  # onnxmltools' XGBoost converter emits nothing newer


@dataclass(frozen=True)
class ConversionResult:
    """An ONNX model plus plain-dict ``metadata`` (converter, opsets and ``parity``)."""

    model: onnx.ModelProto
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def parity(self) -> dict[str, Any]:
        parity: dict[str, Any] = self.metadata["parity"]
        return parity

    def agrees(self, atol: float = 1e-4) -> bool:
        """True when every label matches and floats differ by at most ``atol`` on the sample."""
        rate = self.parity.get("label_match_rate")
        return float(self.parity["max_abs_diff"]) <= atol and (rate is None or rate == 1.0)

    def to_bytes(self) -> bytes:
        data: bytes = self.model.SerializeToString()
        return data

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.write_bytes(self.to_bytes())
        return out


def _module(name: str, package: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise install_hint(package, extra) from exc


def _sample(sample: Mapping[str, Array] | Array) -> Array:
    arr = np.asarray(next(iter(sample.values())) if isinstance(sample, Mapping) else sample)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InvalidInputError(f"sample: need a 2-D array with rows, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise InvalidInputError(
            f"sample: numeric features only (got {arr.dtype}); serve text pipelines with the "
            "sklearn runtime"
        )
    return arr


def _family(model: Any) -> str:
    root = type(model).__module__.partition(".")[0]
    if root not in ("sklearn", "xgboost", "lightgbm"):
        raise InvalidInputError(
            f"model: cannot convert {type(model).__name__} (from {root}); to_onnx takes "
            "scikit-learn, XGBoost and LightGBM sklearn-API models"
        )
    return root


def _convert(
    model: Any, family: str, n_features: int, target_opset: int | None
) -> tuple[onnx.ModelProto, str]:
    if family == "sklearn":
        skl2onnx = _module("skl2onnx", "skl2onnx", "sklearn")
        types = _module("skl2onnx.common.data_types", "skl2onnx", "sklearn")
        initial = [(INPUT, types.FloatTensorType([None, n_features]))]
        options = {"zipmap": False} if hasattr(model, "predict_proba") else None
        proto = skl2onnx.convert_sklearn(
            model, initial_types=initial, target_opset=target_opset, options=options
        )
        return proto, f"skl2onnx {skl2onnx.__version__}"
    omt = _module("onnxmltools", "onnxmltools", family)
    types = _module("onnxmltools.convert.common.data_types", "onnxmltools", family)
    initial = [(INPUT, types.FloatTensorType([None, n_features]))]
    if family == "xgboost":
        opset = min(target_opset or XGBOOST_MAX_OPSET, XGBOOST_MAX_OPSET)
        proto = omt.convert_xgboost(model, initial_types=initial, target_opset=opset)
    else:
        proto = omt.convert_lightgbm(
            model, initial_types=initial, target_opset=target_opset, zipmap=False
        )
    return proto, f"onnxmltools {omt.__version__}"


def _reference(model: Any, sample: Array) -> dict[str, Array]:
    """The original model's outputs on the sample, named as the native runtimes name them."""
    if getattr(model, "classes_", None) is None:
        return {"prediction": np.asarray(model.predict(sample))}
    out = {"label": np.asarray(model.predict(sample))}
    if hasattr(model, "predict_proba"):
        out["probabilities"] = np.asarray(model.predict_proba(sample))
    return out


def to_onnx(
    model: Any,
    sample: Mapping[str, Array] | Array,
    *,
    target_opset: int | None = None,
    name: str | None = None,
) -> ConversionResult:
    """Convert a fitted scikit-learn, XGBoost or LightGBM model to ONNX and measure parity.

    ``sample`` (rows of features) fixes the input width and type and is what parity is measured
    on. Raises MissingDependencyError (with the install hint) when the converter is missing and
    InvalidInputError for models or samples it cannot convert.
    """
    family = _family(model)
    arr = _sample(sample)
    try:
        reference = _reference(model, arr)
    except Exception as exc:
        raise InvalidInputError(f"model: predicting on the sample failed ({exc})") from exc
    try:
        proto, converter = _convert(model, family, arr.shape[1], target_opset)
    except (InvalidInputError, MissingDependencyError):
        raise
    except Exception as exc:
        raise InvalidInputError(f"model: conversion to ONNX failed ({exc})") from exc
    proto = _reshape_io(proto, arr.dtype, reference)
    if name:
        proto.graph.name = name
    try:
        onnx.checker.check_model(proto)
        parity = _parity(proto, arr, reference)
    except Exception as exc:
        raise InvalidInputError(f"model: the converted graph does not run ({exc})") from exc
    metadata: dict[str, Any] = {
        "converted_from": f"{type(model).__module__}.{type(model).__qualname__}",
        "converter": converter,
        "opsets": {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import},
        "parity": parity,
    }
    return ConversionResult(model=proto, metadata=metadata)


def _parity(
    proto: onnx.ModelProto, sample: Array, reference: Mapping[str, Array]
) -> dict[str, Any]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(reference)
    got = dict(zip(names, session.run(names, {INPUT: _input_of(sample)}), strict=True))
    parity: dict[str, Any] = {"rows": int(sample.shape[0]), "max_abs_diff": 0.0}
    for floats in ("probabilities", "prediction"):
        if floats in reference:
            diff = np.abs(got[floats].astype(np.float64) - reference[floats].astype(np.float64))
            parity["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    if "label" in reference:
        parity["label_match_rate"] = float(np.mean(got["label"] == reference["label"]))
    return parity


def _input_of(sample: Array) -> Array:
    return sample.astype(np.float64 if sample.dtype == np.float64 else np.float32)


_OUTPUT_HINTS = {"label": "label", "probabilities": "prob", "prediction": "variable"}


def _converter_output(produced: list[str], wanted: str) -> str:
    """Which converter output holds ``wanted`` (converters name them label/probabilities,
    output_label/output_probability, variable)."""
    if wanted == "prediction" and len(produced) == 1:
        return produced[0]
    hits = [p for p in produced if _OUTPUT_HINTS[wanted] in p.lower()]
    if len(hits) != 1:
        raise InvalidInputError(f"model: cannot tell which of outputs {produced} is {wanted!r}")
    return hits[0]


def _output_nodes(
    raw: str, dst: str, ref: Array
) -> tuple[list[onnx.NodeProto], onnx.ValueInfoProto]:
    """Nodes turning converter output ``raw`` into ``dst`` shaped and typed like ``ref``."""
    nodes: list[onnx.NodeProto] = []
    if ref.ndim == 1:  # e.g. a regressor's [N, 1] becomes [N]
        shape = helper.make_tensor(f"{dst}__shape", TensorProto.INT64, [1], [-1])
        nodes.append(helper.make_node("Constant", [], [shape.name], value=shape))
        nodes.append(helper.make_node("Reshape", [raw, shape.name], [f"{dst}__flat"]))
        raw = f"{dst}__flat"
    if ref.dtype.kind in "OUS":
        elem = TensorProto.STRING
        nodes.append(helper.make_node("Identity", [raw], [dst]))
    else:
        elem = helper.np_dtype_to_tensor_dtype(ref.dtype)
        nodes.append(helper.make_node("Cast", [raw], [dst], to=elem))
    return nodes, helper.make_tensor_value_info(dst, elem, ["N", *ref.shape[1:]])


def _reshape_io(
    proto: onnx.ModelProto, input_dtype: np.dtype[Any], reference: Mapping[str, Array]
) -> onnx.ModelProto:
    """Rename, reshape and cast the converter's outputs (and input) to the native signatures."""
    graph = proto.graph
    renames: dict[str, str] = {}
    head: list[onnx.NodeProto] = []
    tail: list[onnx.NodeProto] = []
    if input_dtype == np.float64:  # accept FP64 like the native runtime; cast once, inside
        renames[INPUT] = f"{INPUT}__f32"
        head.append(helper.make_node("Cast", [INPUT], [renames[INPUT]], to=TensorProto.FLOAT))
        graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    produced = [o.name for o in graph.output if o.type.WhichOneof("value") == "tensor_type"]
    outputs: list[onnx.ValueInfoProto] = []
    for dst, ref in reference.items():
        src = _converter_output(produced, dst)
        renames[src] = f"{src}__raw"
        nodes, info = _output_nodes(renames[src], dst, ref)
        tail.extend(nodes)
        outputs.append(info)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for info in graph.value_info:
        info.name = renames.get(info.name, info.name)
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(outputs)
    if not any(imp.domain in ("", "ai.onnx") for imp in proto.opset_import):
        # Cast/Reshape live in the default domain, which tree-only graphs do not import.
        proto.opset_import.append(helper.make_opsetid("", 13))
    return proto
