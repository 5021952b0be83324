"""Tables <-> model tensors: which columns feed which model input, and outputs back as columns.

Shared by every offline frontend (batch files, Spark, Ray Data), so a table is read the same way
wherever it is scored. The plan is made once from the table's schema and the model's signature
(:func:`plan_mapping`), checked up front - a missing or mistyped column is a clear
:class:`~modelyard.errors.InvalidInputError` before any row is scored - and then applied to each
Arrow record batch (:meth:`ColumnMapping.to_inputs`).

How a model input finds its columns, first rule that applies:

1. ``columns`` given for it (``--columns``): those columns, in that order;
2. ``feature_names`` recorded with the version (scikit-learn's ``feature_names_in_``, or version
   metadata ``feature_names``): those columns;
3. a column with the input's own name: that column (a list column feeds a ``[-1, n]`` input);
4. a ``[-1, n]`` input: the first ``n`` numeric columns that are not keys and not used by an
   earlier input (``[-1, -1]``: all of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from modelyard.errors import InvalidInputError
from modelyard.types import Array, Datatype, Signature, TensorSpec

ROW_SOURCE = "_source"
ROW_NUMBER = "_row"
"""Columns that identify a row when no key columns are given: input file and row in it."""

_FLOATS = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64})
_INTS = frozenset(
    {
        Datatype.INT8,
        Datatype.INT16,
        Datatype.INT32,
        Datatype.INT64,
        Datatype.UINT8,
        Datatype.UINT16,
        Datatype.UINT32,
        Datatype.UINT64,
    }
)


@dataclass(frozen=True, slots=True)
class InputBinding:
    """Columns that make one model input. ``kind``: ``matrix`` (columns side by side into
    ``[rows, len(columns)]``), ``column`` (one column, ``[rows]`` or ``[rows, 1]``) or ``list``
    (one list column, ``[rows, n]``)."""

    name: str
    columns: tuple[str, ...]
    datatype: Datatype
    shape: tuple[int, ...]
    kind: str


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """The plan: model inputs from columns, key columns carried through, outputs requested."""

    bindings: tuple[InputBinding, ...]
    keys: tuple[str, ...]
    outputs: tuple[str, ...]

    def columns(self) -> list[str]:
        """Every column the job reads: keys first, then features, each once."""
        seen: dict[str, None] = dict.fromkeys(self.keys)
        for binding in self.bindings:
            seen.update(dict.fromkeys(binding.columns))
        return list(seen)

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the plan (stored in a job manifest to detect changes)."""
        return {
            "inputs": {b.name: list(b.columns) for b in self.bindings},
            "keys": list(self.keys),
            "outputs": list(self.outputs),
        }

    def check_schema(self, schema: pa.Schema, where: str) -> None:
        """Every planned column is present in ``schema`` with a type its input takes."""
        for binding in self.bindings:
            for column in binding.columns:
                field = _field(schema, column, where, f"model input '{binding.name}'")
                _check_type(field, binding, where)
        for key in self.keys:
            _field(schema, key, where, "--key")

    def to_inputs(self, batch: pa.RecordBatch, where: str = "the input") -> dict[str, Array]:
        """Model inputs for one record batch (numpy arrays of the inputs' datatypes)."""
        return {b.name: _convert(batch, b, where) for b in self.bindings}


def plan_mapping(
    schema: pa.Schema,
    signature: Signature,
    *,
    keys: Sequence[str] = (),
    columns: Mapping[str, Sequence[str]] | None = None,
    feature_names: Mapping[str, Sequence[str]] | None = None,
    outputs: Sequence[str] | None = None,
    where: str = "the input",
) -> ColumnMapping:
    """Decide which columns feed each model input (rules in the module docstring).

    ``columns`` maps an input name to its columns; the key ``""`` means "the model's only
    matrix input". Raises InvalidInputError naming the column or input at fault.
    """
    columns = dict(columns or {})
    if "" in columns:
        columns[_only_matrix_input(signature)] = columns.pop("")
    for name in columns:
        if signature.input(name) is None:
            known = ", ".join(s.name for s in signature.inputs)
            raise InvalidInputError(f"--columns names input '{name}'; the model's inputs: {known}")
    for key in keys:
        _field(schema, key, where, "--key")
    used: set[str] = set(keys)
    bindings: list[InputBinding] = []
    for spec in signature.inputs:
        binding = _bind(spec, schema, used, columns, feature_names or {}, where)
        for column in binding.columns:
            _check_type(_field(schema, column, where, f"model input '{spec.name}'"), binding, where)
        used.update(binding.columns)
        bindings.append(binding)
    wanted = tuple(outputs) if outputs else tuple(s.name for s in signature.outputs)
    for name in wanted:
        if signature.output(name) is None:
            known = ", ".join(s.name for s in signature.outputs)
            raise InvalidInputError(f"--outputs names '{name}'; the model's outputs: {known}")
        if name in keys or (not keys and name in (ROW_SOURCE, ROW_NUMBER)):
            raise InvalidInputError(
                f"model output '{name}' has the name of a key column; rename the key column "
                "or choose other --outputs"
            )
    return ColumnMapping(tuple(bindings), tuple(keys), wanted)


def _only_matrix_input(signature: Signature) -> str:
    candidates = [s for s in signature.inputs if len(s.shape) == 2]
    if len(candidates) != 1:
        names = ", ".join(s.name for s in signature.inputs)
        raise InvalidInputError(
            f"--columns without an input name needs a model with one 2-D input (inputs: "
            f"{names}); write --columns INPUT:COL,COL"
        )
    return candidates[0].name


def _bind(
    spec: TensorSpec,
    schema: pa.Schema,
    used: set[str],
    explicit: Mapping[str, Sequence[str]],
    feature_names: Mapping[str, Sequence[str]],
    where: str,
) -> InputBinding:
    rank = len(spec.shape)
    if rank not in (1, 2) or (spec.shape and spec.shape[0] not in (-1,)):
        raise InvalidInputError(
            f"model input '{spec.name}' has shape {list(spec.shape)}; tables feed inputs "
            "shaped [-1] or [-1, n] (a variable batch dim first)"
        )
    chosen = explicit.get(spec.name) or feature_names.get(spec.name)
    if chosen:
        return _matrix(spec, tuple(chosen), where)
    if spec.name in schema.names:
        field = schema.field(spec.name)
        if rank == 2 and _is_list(field.type):
            return InputBinding(spec.name, (spec.name,), spec.datatype, spec.shape, "list")
        if rank == 1 or spec.shape[1] == 1:
            return InputBinding(spec.name, (spec.name,), spec.datatype, spec.shape, "column")
    if rank == 1:
        raise InvalidInputError(
            f"no column for model input '{spec.name}' (shape {list(spec.shape)}): the input "
            f"has no column named '{spec.name}'; pass --columns {spec.name}:COLUMN"
        )
    numeric = [
        f.name
        for f in schema
        if f.name not in used and _is_numeric(f.type) and not f.name.startswith("__")
    ]
    width = spec.shape[1]
    if width == -1:
        picked = numeric
    else:
        picked = numeric[:width]
    if not picked or len(picked) < width:
        raise InvalidInputError(
            f"model input '{spec.name}' takes {width} feature columns but {where} has "
            f"{len(numeric)} numeric columns that are not keys ({', '.join(numeric) or 'none'}); "
            "pass --columns to name them"
        )
    return InputBinding(spec.name, tuple(picked), spec.datatype, spec.shape, "matrix")


def _matrix(spec: TensorSpec, columns: tuple[str, ...], where: str) -> InputBinding:
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"model input '{spec.name}': a column is named twice")
    if len(spec.shape) == 1:
        if len(columns) != 1:
            raise InvalidInputError(
                f"model input '{spec.name}' is 1-D and takes one column, got {len(columns)}"
            )
        return InputBinding(spec.name, columns, spec.datatype, spec.shape, "column")
    width = spec.shape[1]
    if width != -1 and width != len(columns):
        raise InvalidInputError(
            f"model input '{spec.name}' takes {width} feature columns; {len(columns)} are named "
            f"({', '.join(columns)})"
        )
    return InputBinding(spec.name, columns, spec.datatype, spec.shape, "matrix")


def _field(schema: pa.Schema, column: str, where: str, role: str) -> pa.Field:
    index = schema.get_field_index(column)
    if index < 0:
        shown = ", ".join(schema.names[:30]) + (", ..." if len(schema.names) > 30 else "")
        raise InvalidInputError(
            f"column '{column}' ({role}) is missing from {where} (its columns: {shown})"
        )
    return schema.field(index)


def _value_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


def _is_list(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    )


def _is_numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def _check_type(field: pa.Field, binding: InputBinding, where: str) -> None:
    dtype = _value_type(field.type)
    if binding.kind == "list":
        if not _is_list(dtype):
            raise _mistyped(field, binding, where, "a list column")
        dtype = dtype.value_type
    target = binding.datatype
    if target in _FLOATS:
        ok = _is_numeric(dtype)
        wanted = "numeric columns"
    elif target in _INTS:
        ok = pa.types.is_integer(dtype)
        wanted = "integer columns"
    elif target is Datatype.BOOL:
        ok = pa.types.is_boolean(dtype)
        wanted = "boolean columns"
    else:
        ok = bool(
            pa.types.is_string(dtype)
            or pa.types.is_large_string(dtype)
            or pa.types.is_binary(dtype)
            or pa.types.is_large_binary(dtype)
        )
        wanted = "string or binary columns"
    if not ok:
        raise _mistyped(field, binding, where, wanted)


def _mistyped(field: pa.Field, binding: InputBinding, where: str, wanted: str) -> InvalidInputError:
    return InvalidInputError(
        f"column '{field.name}' in {where} is {field.type}; model input '{binding.name}' is "
        f"{binding.datatype.value} and takes {wanted}"
    )


# ---- conversion --------------------------------------------------------------------------------
def _column(batch: pa.RecordBatch, name: str, binding: InputBinding, where: str) -> pa.Array:
    array = batch.column(name)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        floats = binding.datatype in _FLOATS
        if not floats:
            raise InvalidInputError(
                f"column '{name}' has {array.null_count} missing values in {where}; model input "
                f"'{binding.name}' takes no missing values"
            )
        array = array.cast(pa.float64()) if not pa.types.is_floating(array.type) else array
        # Nulls become NaN; the signature check rejects them unless the input allows NaN.
        array = pc.fill_null(array, float("nan"))
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _convert(batch: pa.RecordBatch, binding: InputBinding, where: str) -> Array:
    target = binding.datatype.numpy_dtype
    rows = batch.num_rows
    if binding.kind == "matrix":
        out = np.empty((rows, len(binding.columns)), dtype=target)
        for j, name in enumerate(binding.columns):
            array = _column(batch, name, binding, where)
            if binding.datatype in _FLOATS:
                # numpy converts while it copies into the matrix: one pass per column.
                out[:, j] = array.to_numpy(zero_copy_only=False)
            else:
                out[:, j] = _numpy(array, binding, where, name)
        return out
    array = _column(batch, binding.columns[0], binding, where)
    if binding.kind == "list":
        return _from_list(array, binding, where, rows)
    values = _numpy(array, binding, where, binding.columns[0])
    return values.reshape(rows, 1) if len(binding.shape) == 2 else values


def _numpy(array: pa.Array, binding: InputBinding, where: str, name: str) -> Array:
    target = binding.datatype
    if target is Datatype.BYTES:
        texts = np.empty(len(array), dtype=object)
        texts[:] = array.to_pylist()
        return texts
    if target in _INTS and array.type != pa.from_numpy_dtype(target.numpy_dtype):
        try:  # a safe cast: an out-of-range value is an error, never a silent wrap-around
            array = array.cast(pa.from_numpy_dtype(target.numpy_dtype))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(
                f"column '{name}' in {where} does not fit model input '{binding.name}' "
                f"({target.value}): {exc}"
            ) from exc
    values: Array = array.to_numpy(zero_copy_only=False)
    return values if values.dtype == target.numpy_dtype else values.astype(target.numpy_dtype)


def _from_list(array: pa.Array, binding: InputBinding, where: str, rows: int) -> Array:
    name = binding.columns[0]
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        flat = array.flatten()
    else:
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if rows else 0
        if rows and not bool((lengths == width).all()):
            raise InvalidInputError(
                f"list column '{name}' in {where} has rows of different lengths; model input "
                f"'{binding.name}' needs {binding.shape[1]} values in every row"
            )
        flat = array.flatten()
    if binding.shape[1] not in (-1, width):
        raise InvalidInputError(
            f"list column '{name}' in {where} has {width} values per row; model input "
            f"'{binding.name}' takes {binding.shape[1]}"
        )
    if flat.null_count:
        raise InvalidInputError(f"list column '{name}' in {where} has missing values")
    values = _numpy(flat, binding, where, name)
    return values.reshape(rows, width)


def outputs_to_columns(outputs: Mapping[str, Array], names: Sequence[str]) -> list[pa.Array]:
    """Output tensors as Arrow columns, in ``names`` order: ``[rows]`` and ``[rows, 1]`` become
    plain columns, wider tensors fixed-size list columns, BYTES string (or binary) columns."""
    return [_output_column(name, outputs[name]) for name in names]


def _output_column(name: str, values: Array) -> pa.Array:
    if values.ndim == 0:
        raise InvalidInputError(f"model output '{name}' is a scalar; it has no row per input")
    rows = values.shape[0]
    flat = values.reshape(rows, -1) if values.ndim > 1 else values
    if values.dtype == object:
        column = pa.array(flat.reshape(-1).tolist(), type=pa.binary())
        try:
            column = column.cast(pa.string())
        except pa.ArrowInvalid:
            pass  # not UTF-8 text: keep the bytes
    else:
        column = pa.array(np.ascontiguousarray(flat).reshape(-1))
    if flat.ndim == 2 and flat.shape[1] != 1:
        return pa.FixedSizeListArray.from_arrays(column, flat.shape[1])
    return column


def feature_names_of(
    metadata: Mapping[str, Any], runtime_options: Mapping[str, Any], signature: Signature
) -> dict[str, list[str]]:
    """Feature columns recorded with a version: ``feature_names`` in its metadata (a list for a
    single-input model, or input name -> list) or in the runtime options (scikit-learn)."""
    for source in (metadata.get("feature_names"), runtime_options.get("feature_names")):
        if isinstance(source, list) and source and len(signature.inputs) == 1:
            return {signature.inputs[0].name: [str(c) for c in source]}
        if isinstance(source, dict):
            return {str(k): [str(c) for c in v] for k, v in source.items() if isinstance(v, list)}
    return {}
