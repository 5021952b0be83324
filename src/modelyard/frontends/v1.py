"""KServe V1 (TensorFlow Serving style) prediction: ``POST /v1/models/{m}:predict``.

Requests carry either ``{"instances": [...]}`` (rows) or ``{"inputs": ...}`` (columns); both are
answered with ``{"predictions": ...}``. The model's metadata maps them onto its inputs:

* one input: ``instances`` is the list of rows of that input (``inputs`` is that input's data);
* several inputs: each instance is an object keyed by input name (``inputs`` is an object of
  input name -> data).

One output: ``predictions`` is that output's rows. Several outputs: a list of objects keyed by
output name, one per row; when the outputs do not share a batch dimension, an object of output
name -> data instead. BYTES values are strings when UTF-8, else ``{"b64": "..."}``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from modelyard.core.dataplane import DataPlane
from modelyard.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from modelyard.frontends.codec import array_from_json, json_ready, load_json
from modelyard.types import Array, Datatype, InferRequest, RequestContext, TensorSpec

PREDICT_VERB = "predict"


def split_verb(target: str) -> tuple[str, str]:
    """``"fraud:predict"`` -> ``("fraud", "predict")``; raises NotFoundError without a verb."""
    name, sep, verb = target.rpartition(":")
    if not sep or not name:
        raise NotFoundError(f"no V1 route for model path {target!r} (expected NAME:predict)")
    return name, verb


async def predict(
    dataplane: DataPlane, name: str, body: bytes, ctx: RequestContext, max_elements: int
) -> bytes:
    """Run one V1 predict request through the dataplane; return the JSON response body."""
    doc = load_json(body, "request body")
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise InvalidInputError(
            "request body must be a JSON object with exactly one of instances (rows) "
            "or inputs (columns)"
        )
    metadata = await dataplane.model_metadata(name)
    specs = metadata.inputs
    if "instances" in doc:
        columns = _columns_from_rows(doc["instances"], specs)
    else:
        columns = _columns_from_inputs(doc["inputs"], specs)
    arrays = {spec.name: _array(columns[spec.name], spec, max_elements) for spec in specs}
    response = await dataplane.infer(name, None, InferRequest(inputs=arrays), ctx)
    return orjson.dumps(
        {"predictions": _predictions(response.outputs)}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def _columns_from_rows(instances: object, specs: Sequence[TensorSpec]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("instances must be a non-empty JSON array")
    if all(isinstance(row, dict) for row in instances):
        names = {spec.name for spec in specs}
        for index, row in enumerate(instances):
            if row.keys() != names:
                raise InvalidInputError(
                    f"instances[{index}] must have exactly the keys {sorted(names)}, "
                    f"got {sorted(row)}"
                )
        return {name: [row[name] for row in instances] for name in names}
    if len(specs) != 1:
        raise InvalidInputError(
            f"the model has {len(specs)} inputs: each of instances must be a JSON object "
            "keyed by input name"
        )
    return {specs[0].name: instances}


def _columns_from_inputs(inputs: object, specs: Sequence[TensorSpec]) -> dict[str, Any]:
    names = {spec.name for spec in specs}
    if isinstance(inputs, dict):
        if inputs.keys() != names:
            raise InvalidInputError(
                f"inputs must have exactly the keys {sorted(names)}, got {sorted(inputs)}"
            )
        return inputs
    if len(specs) != 1:
        raise InvalidInputError(
            f"the model has {len(specs)} inputs: inputs must be a JSON object keyed by input name"
        )
    return {specs[0].name: inputs}


def _array(data: object, spec: TensorSpec, max_elements: int) -> Array:
    where = f"input {spec.name!r}"
    if not isinstance(data, list):
        data = [data]  # columnar scalars: one value per input
    array = array_from_json(data, spec.datatype, None, where)
    if array.size > max_elements:
        raise PayloadTooLargeError(
            f"{where}: {array.size} elements, more than the limit of {max_elements}"
        )
    return array


def _predictions(outputs: dict[str, Array]) -> Any:
    if len(outputs) == 1:
        return _jsonable(next(iter(outputs.values())))
    batch = {array.shape[0] if array.ndim else -1 for array in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        return {name: _jsonable(array) for name, array in outputs.items()}
    names = list(outputs)
    columns = [_as_list(array) for array in outputs.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _jsonable(array: Array) -> Any:
    if array.ndim == 0 or Datatype.from_numpy(array.dtype) is Datatype.BYTES:
        return _as_list(array)  # orjson serialises no 0-d arrays
    return json_ready(array).reshape(array.shape)


def _as_list(array: Array) -> Any:
    if Datatype.from_numpy(array.dtype) is Datatype.BYTES:
        return np.asarray(np.frompyfunc(_text, 1, 1)(array.astype(object))).tolist()
    return array.tolist()


def _text(value: object) -> object:
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}
