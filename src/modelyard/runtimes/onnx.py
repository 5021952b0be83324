"""ONNX Runtime (kind ``onnx``): the fast path every classic model can be converted to.

A version holds ``model.onnx`` (plus any external-data files it references). The signature comes
from the graph: ONNX element types map to V2 datatypes, symbolic or unknown dims become -1, and
non-tensor outputs (e.g. the ``seq(map)`` of a ZipMap) are left out because they have no V2
encoding. ``InferenceSession.run`` is thread-safe and releases the GIL, so no lock is taken.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import external_data_helper

from modelyard.errors import FailedPreconditionError, InvalidInputError
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel
from modelyard.runtimes._common import (
    as_path,
    copy_file,
    engine_errors,
    file_size,
    first_line,
    input_array,
    measure_load,
    to_strings,
)
from modelyard.runtimes._registry import register
from modelyard.types import Array, Datatype, Signature, TensorSpec

MODEL_FILE = "model.onnx"

_ELEM_TYPES: dict[int, Datatype] = {
    onnx.TensorProto.BOOL: Datatype.BOOL,
    onnx.TensorProto.UINT8: Datatype.UINT8,
    onnx.TensorProto.UINT16: Datatype.UINT16,
    onnx.TensorProto.UINT32: Datatype.UINT32,
    onnx.TensorProto.UINT64: Datatype.UINT64,
    onnx.TensorProto.INT8: Datatype.INT8,
    onnx.TensorProto.INT16: Datatype.INT16,
    onnx.TensorProto.INT32: Datatype.INT32,
    onnx.TensorProto.INT64: Datatype.INT64,
    onnx.TensorProto.FLOAT16: Datatype.FP16,
    onnx.TensorProto.FLOAT: Datatype.FP32,
    onnx.TensorProto.DOUBLE: Datatype.FP64,
    onnx.TensorProto.STRING: Datatype.BYTES,
}

_OPT_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _tensor_spec(value: onnx.ValueInfoProto, where: str) -> TensorSpec | None:
    """The V2 spec of a graph input/output; None when it is not a tensor."""
    if value.type.WhichOneof("value") != "tensor_type":
        return None
    tensor = value.type.tensor_type
    datatype = _ELEM_TYPES.get(tensor.elem_type)
    if datatype is None:
        name = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise InvalidInputError(f"onnx {where} {value.name!r}: element type {name} is not served")
    dims: tuple[int, ...] = ()
    if tensor.HasField("shape"):
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(name=value.name, datatype=datatype, shape=dims)


def signature_of(model: onnx.ModelProto) -> tuple[Signature, list[str]]:
    """The signature of a graph, and the names of outputs left out (not tensors)."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs: list[TensorSpec] = []
    for value in graph.input:
        if value.name in initializers:  # IR < 4 lists weights as inputs
            continue
        spec = _tensor_spec(value, "input")
        if spec is None:
            raise InvalidInputError(f"onnx input {value.name!r}: only tensor inputs are served")
        inputs.append(spec)
    outputs: list[TensorSpec] = []
    skipped: list[str] = []
    for value in graph.output:
        spec = _tensor_spec(value, "output")
        if spec is None:
            skipped.append(value.name)
        else:
            outputs.append(spec)
    if not outputs:
        raise InvalidInputError(
            f"onnx model has no tensor outputs (left out: {skipped}); convert classifiers with "
            "ZipMap disabled (skl2onnx options={'zipmap': False})"
        )
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs)), skipped


def _external_files(model: onnx.ModelProto) -> list[str]:
    """Relative paths of the external-data files the main graph's weights live in."""
    locations = {
        external_data_helper.ExternalDataInfo(t).location
        for t in model.graph.initializer
        if external_data_helper.uses_external_data(t)
    }
    for rel in locations:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise InvalidInputError(f"onnx external data location {rel!r} leaves the model folder")
    return sorted(locations)


def choose_providers(wanted: Sequence[str]) -> list[str]:
    """The wanted execution providers that this onnxruntime build has, CPU always last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def session_options(options: RuntimeOptions) -> ort.SessionOptions:
    level = _OPT_LEVELS.get(options.graph_optimization_level)
    if level is None:
        raise InvalidInputError(
            f"graph_optimization_level {options.graph_optimization_level!r} is not one of "
            f"{', '.join(_OPT_LEVELS)}"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.graph_optimization_level = level
    so.log_severity_level = 3  # errors only: provider choice is handled (and reported) here
    return so


@register
class OnnxRuntime(Runtime):
    """ONNX Runtime session over ``model.onnx``. String tensors are object arrays of ``str``."""

    kind: ClassVar[str] = "onnx"
    accepts_raw_bytes: ClassVar[bool] = False

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._session: ort.InferenceSession | None = None
        self._input_types: dict[str, np.dtype[Any]] = {}
        self._shared_dims: list[SharedDim] = []
        self._bytes = 1

    @classmethod
    def can_save(cls, obj: object) -> bool:
        if isinstance(obj, onnx.ModelProto):
            return True
        path = as_path(obj)
        return path is not None and path.suffix.lower() == ".onnx"

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Copy an ``.onnx`` file (and its external data) or serialise a ModelProto."""
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, onnx.ModelProto):
            model = obj
            onnx.save_model(model, str(directory / MODEL_FILE))
        else:
            src = as_path(obj)
            if src is None:
                raise InvalidInputError(f"onnx runtime: {obj!r} is not an .onnx file")
            try:
                model = onnx.load_model(str(src), load_external_data=False)
            except Exception as exc:
                raise InvalidInputError(f"{src}: not a readable ONNX model ({exc})") from exc
            # Protobuf parses an empty file (and some other bytes) as an empty ModelProto.
            if not model.HasField("graph"):
                what = "the file is empty" if src.stat().st_size == 0 else "it has no graph"
                raise InvalidInputError(f"{src}: not a readable ONNX model ({what})")
            copy_file(src, directory, MODEL_FILE)
            for rel in _external_files(model):
                copy_file(src.parent / rel, (directory / rel).parent, Path(rel).name)
        signature, skipped = signature_of(model)
        metadata: dict[str, Any] = {
            "opsets": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        }
        if skipped:
            metadata["outputs_left_out"] = skipped
        return SavedModel(signature=signature, metadata=metadata)

    def load(self) -> None:
        so = session_options(self.options)
        providers = choose_providers(self.options.execution_providers)
        model_file = self.path / MODEL_FILE
        if not model_file.is_file():
            raise FailedPreconditionError(f"onnx runtime: {model_file} is missing")

        def create() -> ort.InferenceSession:
            try:
                return ort.InferenceSession(str(model_file), sess_options=so, providers=providers)
            except Exception as exc:  # ORT raises its own exception types from C++
                raise FailedPreconditionError(
                    f"onnx runtime: cannot create a session for {MODEL_FILE}: {first_line(exc)}"
                ) from exc

        _ort_ready()
        session, self._bytes = measure_load(create, self.manifest.total_bytes())
        self._bytes = max(self._bytes, file_size(model_file))
        self._input_types = {
            i.name: ORT_INPUT_DTYPES.get(i.type, np.dtype(object)) for i in session.get_inputs()
        }
        self._shared_dims = shared_dims(session.get_inputs())
        self._session = session

    @property
    def providers(self) -> list[str]:
        """Execution providers the loaded session uses."""
        return list(self._session.get_providers()) if self._session is not None else []

    def predict(
        self, inputs: Mapping[str, Array], *, outputs: Sequence[str] | None = None
    ) -> dict[str, Array]:
        """Run the session; ``outputs`` limits the computed outputs (default: the signature's)."""
        session = self._session
        if session is None:
            raise FailedPreconditionError("onnx runtime: predict() before load()")
        names = list(outputs) if outputs else [o.name for o in self.manifest.signature.outputs]
        if not names:
            names = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
        feed = {name: self._feed(name, inputs) for name in self._input_types}
        check_shared_dims(self._shared_dims, feed)
        with engine_errors(self.kind):
            results = session.run(names, feed)
        return dict(zip(names, (np.asarray(r) for r in results), strict=True))

    def _feed(self, name: str, inputs: Mapping[str, Array]) -> Array:
        want = self._input_types[name]
        arr = input_array(inputs, name)
        if want.kind == "O":
            # ONNX Runtime takes str objects; bytes arrive when the caller did not decode.
            if arr.dtype.kind == "O" and all(type(v) is str for v in arr.flat):
                return arr
            return to_strings(arr)
        if arr.dtype == want:
            return arr
        if np.can_cast(arr.dtype, want, casting="safe"):
            return arr.astype(want)
        raise InvalidInputError(
            f"input {name!r} has datatype {Datatype.from_numpy(arr.dtype).value}; "
            f"the model takes {Datatype.from_numpy(want).value}"
        )

    def memory_bytes(self) -> int:
        """Approximate: RSS growth while the session was created, at least the file size."""
        return self._bytes

    def unload(self) -> None:
        self._session = None


# ONNX Runtime input types -> the numpy dtype to feed (the pipeline's onnx step uses it too).
ORT_INPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(string)": np.dtype(object),
}


SharedDim = tuple[str, list[tuple[str, int]]]
"""A symbolic dimension (ONNX ``dim_param``) and the (input, axis) places that share it."""


def shared_dims(session_inputs: Sequence[Any]) -> list[SharedDim]:
    """The named dimensions that more than one place of the graph's inputs share (e.g.
    ``batch`` on every input): ONNX says they are the same size, ORT does not check it."""
    places: dict[str, list[tuple[str, int]]] = {}
    for arg in session_inputs:
        for axis, dim in enumerate(arg.shape or ()):
            if isinstance(dim, str) and dim:
                places.setdefault(dim, []).append((arg.name, axis))
    return [(dim, where) for dim, where in places.items() if len(where) > 1]


def check_shared_dims(shared: list[SharedDim], feed: Mapping[str, Array]) -> None:
    """InvalidInputError when inputs give one named dimension different sizes (ORT would fail
    somewhere inside the graph, as if the model were broken)."""
    for dim, where in shared:
        sizes = {
            f"'{name}' axis {axis}": feed[name].shape[axis]
            for name, axis in where
            if name in feed and feed[name].ndim > axis
        }
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{place} = {size}" for place, size in sizes.items())
            raise InvalidInputError(
                f"inputs disagree on the size of dimension '{dim}' the model gives them all: "
                f"{listed}"
            )


@functools.cache
def _ort_ready() -> None:
    """Pay ONNX Runtime's one-time set-up of the process (its environment, kernel registries,
    allocators: about 10 MB) once, outside any measured load. Otherwise the first model loaded
    in a process is charged for it, and a model's size in the cache depends on load order."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "ready", [x], [y]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8  # read by every ONNX Runtime ModelYard supports
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # a measurement nicety: never a reason for a load to fail
        return
