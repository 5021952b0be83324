"""Open Inference Protocol V2 REST codec: request and response bodies (JSON, optionally followed
by binary tensor data) <-> :mod:`modelyard.types`.

The tensors inside them (JSON ``data``, the raw layout shared with gRPC, datatypes and shapes) are
:mod:`modelyard.frontends.tensor_codec`'s; its functions are re-exported here. Every malformed
field raises :class:`~modelyard.errors.InvalidInputError` naming the field.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InferenceError, InvalidInputError
from modelyard.frontends.tensor_codec import (
    BINARY_DATA_SIZE,
    array_from_json,
    array_from_raw,
    config_datatype,
    json_ready,
    parse_datatype,
    parse_shape,
    raw_from_array,
    strings_from_array,
)
from modelyard.types import (
    Array,
    ConfigTensor,
    Datatype,
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelStatistics,
    StatDuration,
)

__all__ = [
    "BINARY_DATA",
    "BINARY_DATA_OUTPUT",
    "BINARY_DATA_SIZE",
    "array_from_json",
    "array_from_raw",
    "decode_infer_request",
    "encode_infer_response",
    "json_ready",
    "load_json",
    "model_config_doc",
    "parse_datatype",
    "parse_shape",
    "raw_from_array",
    "statistics_doc",
    "strings_from_array",
    "wants_binary",
]

BINARY_DATA = "binary_data"
"""Requested-output parameter: return this output as binary data."""
BINARY_DATA_OUTPUT = "binary_data_output"
"""Request parameter: return every output as binary data unless an output says otherwise."""

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_DATATYPE_OF: dict[np.dtype[Any], Datatype] = {
    d.numpy_dtype: d for d in Datatype if d is not Datatype.BYTES
}


# ---- inference request ------------------------------------------------------------------------
def decode_infer_request(body: bytes, header_length: int | None, max_elements: int) -> InferRequest:
    """A V2 inference request body (JSON, optionally followed by binary tensor data)."""
    end = len(body)
    if header_length is None:
        header_length = end
    elif not 0 <= header_length <= end:
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {header_length} but the body has {end} bytes"
        )
    view = memoryview(body)
    doc = load_json(view[:header_length] if header_length != end else body, "request body")
    if not isinstance(doc, dict):
        raise InvalidInputError("request body must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInputError("inputs is required and must be a JSON array")
    request = InferRequest(inputs={}, id=_request_id(doc.get("id")))
    request.parameters = _parameters(doc.get("parameters"), "parameters")
    offset = header_length
    for index, item in enumerate(inputs):
        offset = _decode_input(request, index, item, view, offset, max_elements)
    if offset != end:
        raise InvalidInputError(
            f"the body has {end - offset} bytes after the JSON header that no input claims "
            "with parameters.binary_data_size"
        )
    _decode_requested_outputs(request, doc.get("outputs"))
    return request


def load_json(data: bytes | memoryview, what: str) -> Any:
    """Parse JSON or raise InvalidInputError naming ``what``.

    Triton's JSON, and Python's ``json.dumps`` (which tritonclient uses), write non-finite
    floats as ``NaN``, ``Infinity`` and ``-Infinity``; orjson refuses those, so a body that has
    them is read again with the standard library (the slow path, taken only then)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        error: Exception = exc
    raw = bytes(data)
    if b"NaN" in raw or b"Infinity" in raw:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            error = exc
    raise InvalidInputError(f"{what} is not valid JSON: {error}") from error


def _request_id(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError(f"id must be a string, got {value!r}")


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where} must be a JSON object")
    return value


def _decode_input(
    request: InferRequest,
    index: int,
    item: object,
    body: memoryview,
    offset: int,
    max_elements: int,
) -> int:
    """Decode ``inputs[index]`` into ``request``; return the new binary data offset."""
    if not isinstance(item, dict):
        raise InvalidInputError(f"inputs[{index}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"inputs[{index}].name is required (a non-empty string)")
    if name in request.inputs:
        raise InvalidInputError(f"inputs[{index}].name: input {name!r} is given twice")
    where = f"input {name!r}"
    datatype = parse_datatype(item.get("datatype"), where)
    shape, _ = parse_shape(item.get("shape"), where, max_elements)
    params = _parameters(item.get("parameters"), f"{where}: parameters")
    if "shared_memory_region" in params:
        raise InvalidInputError(f"{where}: the shared-memory extension is not supported")
    size = params.get(BINARY_DATA_SIZE)
    if size is None:
        if "data" not in item:
            raise InvalidInputError(
                f"{where}: data is required (or parameters.binary_data_size with binary data)"
            )
        request.inputs[name] = array_from_json(item["data"], datatype, shape, where)
    else:
        if "data" in item:
            raise InvalidInputError(f"{where}: give data or parameters.binary_data_size, not both")
        if type(size) is not int or size < 0:
            raise InvalidInputError(
                f"{where}: parameters.binary_data_size must be a non-negative integer"
            )
        if offset + size > len(body):
            raise InvalidInputError(
                f"{where}: parameters.binary_data_size is {size} but only "
                f"{len(body) - offset} bytes of binary data are left in the body"
            )
        request.inputs[name] = array_from_raw(body[offset : offset + size], datatype, shape, where)
        offset += size
        # Framing only: dropped so JSON and binary requests look the same to the dataplane.
        params = {k: v for k, v in params.items() if k != BINARY_DATA_SIZE}
    if params:
        request.input_parameters[name] = params
    return offset


def _decode_requested_outputs(request: InferRequest, outputs: object) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise InvalidInputError("outputs must be a JSON array")
    names: list[str] = []
    for index, item in enumerate(outputs):
        if not isinstance(item, dict):
            raise InvalidInputError(f"outputs[{index}] must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"outputs[{index}].name is required (a non-empty string)")
        params = _parameters(item.get("parameters"), f"outputs[{index}].parameters")
        if params:
            request.output_parameters[name] = params
        names.append(name)
    request.outputs = names or None


# ---- inference response -----------------------------------------------------------------------
def wants_binary(request: InferRequest, name: str) -> bool:
    """Whether output ``name`` goes back as binary data (per-output flag beats the request's)."""
    params = request.output_parameters.get(name)
    if params is not None and BINARY_DATA in params:
        return params[BINARY_DATA] is True
    return request.parameters.get(BINARY_DATA_OUTPUT) is True


def _datatype_of(name: str, array: Array) -> Datatype:
    try:
        return Datatype.from_numpy(array.dtype)
    except ValueError as exc:
        raise InferenceError(f"output {name!r}: {exc}") from exc


def encode_infer_response(
    response: InferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """The response body and, when binary data follows the JSON, the JSON header's length.

    BYTES outputs that are not valid UTF-8 go back as binary data even when JSON was asked for.
    """
    outputs: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, array in response.outputs.items():
        datatype = _DATATYPE_OF.get(array.dtype) or _datatype_of(name, array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype.value, "shape": array.shape}
        binary = wants_binary(request, name)
        if not binary:
            if datatype is Datatype.BYTES:
                strings = strings_from_array(array)
                binary = strings is None
                entry["data"] = strings
            else:
                entry["data"] = json_ready(array)
        if binary:
            raw = raw_from_array(array, datatype)
            entry["parameters"] = {BINARY_DATA_SIZE: len(raw)}
            entry.pop("data", None)
            buffers.append(raw)
        outputs.append(entry)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    response_id = response.id if response.id is not None else request.id
    if response_id is not None:
        doc["id"] = response_id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=_NUMPY)
    if not buffers:
        return header, None
    return b"".join([header, *buffers]), len(header)


# ---- model configuration and statistics -------------------------------------------------------
def model_config_doc(config: ModelConfig) -> dict[str, Any]:
    """The JSON of ``GET /v2/models/{m}/config``: Triton's ``ModelConfig`` field names and enum
    names (``TYPE_FP32``, ``KIND_CPU``), numbers as numbers."""
    doc: dict[str, Any] = {
        "name": config.name,
        "platform": config.platform,
        "backend": config.backend,
        "max_batch_size": config.max_batch_size,
        "input": [_config_tensor_doc(t) for t in config.inputs],
        "output": [_config_tensor_doc(t) for t in config.outputs],
        "instance_group": [
            {"name": config.name, "kind": "KIND_CPU", "count": config.instance_count}
        ],
    }
    if config.max_queue_delay_us is not None:
        doc["dynamic_batching"] = {"max_queue_delay_microseconds": config.max_queue_delay_us}
    doc["parameters"] = {k: {"string_value": v} for k, v in config.parameters.items()}
    return doc


def _config_tensor_doc(tensor: ConfigTensor) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": tensor.name,
        "data_type": config_datatype(tensor.datatype),
        "dims": list(tensor.dims),
    }
    if tensor.reshape is not None:
        doc["reshape"] = {"shape": list(tensor.reshape)}
    return doc


def statistics_doc(stats: list[ModelStatistics]) -> dict[str, Any]:
    """The JSON of ``GET /v2/models[/{m}[/versions/{v}]]/stats`` (the statistics extension)."""
    return {"model_stats": [_model_stats_doc(s) for s in stats]}


def _model_stats_doc(stats: ModelStatistics) -> dict[str, Any]:
    return {
        "name": stats.name,
        "version": stats.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": _duration(stats.cache_hit),
            "cache_miss": _duration(stats.cache_miss),
        },
        "batch_stats": [
            {
                "batch_size": b.batch_size,
                "compute_input": _duration(b.compute_input),
                "compute_infer": _duration(b.compute_infer),
                "compute_output": _duration(b.compute_output),
            }
            for b in stats.batch_stats
        ],
    }


def _duration(value: StatDuration) -> dict[str, int]:
    return {"count": value.count, "ns": value.ns}
