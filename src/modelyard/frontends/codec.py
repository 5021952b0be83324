"""Open Inference Protocol V2 wire codec: JSON and binary tensor data <-> :mod:`modelyard.types`.

Shared by the REST frontend (JSON + the binary tensor data extension) and usable by any frontend
that sees the same raw layout (gRPC ``raw_input_contents``): little-endian, row-major, no padding;
BOOL is one byte 0/1; a BYTES element is a 4-byte little-endian length followed by its bytes.

Decoding is strict where it is cheap to be and vectorised everywhere else: numeric JSON ``data``
goes through one ``np.asarray`` with the target dtype (integers get a second float64 pass to reject
fractions), binary data is a zero-copy ``np.frombuffer`` view of the request body (read-only).
Every malformed field raises :class:`~modelyard.errors.InvalidInputError` naming the field.
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InferenceError, InvalidInputError, PayloadTooLargeError
from modelyard.types import Array, Datatype, InferRequest, InferResponse

BINARY_DATA_SIZE = "binary_data_size"
"""Input/output parameter: the tensor travels as this many bytes after the JSON header."""
BINARY_DATA = "binary_data"
"""Requested-output parameter: return this output as binary data."""
BINARY_DATA_OUTPUT = "binary_data_output"
"""Request parameter: return every output as binary data unless an output says otherwise."""

_DATATYPES: dict[str, Datatype] = {d.value: d for d in Datatype}
_WIRE_DTYPES: dict[Datatype, np.dtype[Any]] = {
    d: d.numpy_dtype.newbyteorder("<") for d in Datatype if d is not Datatype.BYTES
}
_LITTLE_ENDIAN = sys.byteorder == "little"
_LENGTH = struct.Struct("<I")
_FLOATS = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64})
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_DATATYPE_OF: dict[np.dtype[Any], Datatype] = {
    d.numpy_dtype: d for d in Datatype if d is not Datatype.BYTES
}


# ---- tensors ------------------------------------------------------------------------------------
def parse_datatype(value: object, where: str) -> Datatype:
    """The :class:`Datatype` named by a wire ``datatype`` field."""
    datatype = _DATATYPES.get(value) if isinstance(value, str) else None
    if datatype is None:
        raise InvalidInputError(
            f"{where}: datatype must be one of {', '.join(_DATATYPES)}, got {value!r}"
        )
    return datatype


def parse_shape(value: object, where: str, max_elements: int) -> tuple[tuple[int, ...], int]:
    """A wire ``shape`` as a tuple plus its element count, within ``max_elements``."""
    if not isinstance(value, list) or not all(
        type(d) is int and d >= 0
        for d in value  # bool is an int subclass: exclude it
    ):
        raise InvalidInputError(
            f"{where}: shape must be a list of non-negative integers, got {value!r}"
        )
    count = math.prod(value)
    if count > max_elements:
        raise PayloadTooLargeError(
            f"{where}: shape {value} has {count} elements, more than the limit of {max_elements}"
        )
    return tuple(value), count


def array_from_json(
    data: object, datatype: Datatype, shape: tuple[int, ...] | None, where: str
) -> Array:
    """A JSON ``data`` value (flat or nested lists) as an array of ``datatype``.

    With ``shape`` the element count must match it (the nesting need not); with ``shape=None``
    the shape comes from the nesting (V1 ``instances``). Values outside the datatype's range,
    fractions for integer types, and non-numbers raise InvalidInputError.
    """
    if not isinstance(data, list):
        raise InvalidInputError(f"{where}: data must be a JSON array, got {type(data).__name__}")
    if datatype is Datatype.BYTES:
        array = _bytes_from_json(data, shape is None, where)
    else:
        try:
            array = _numbers_from_json(data, datatype, where)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInputError(
                f"{where}: data is not a valid {datatype.value} tensor: {exc}"
            ) from exc
    if shape is None:
        return array
    count = math.prod(shape)
    if array.size != count:
        raise InvalidInputError(
            f"{where}: data has {array.size} elements but shape {list(shape)} needs {count}"
        )
    return array if array.shape == shape else array.reshape(shape)


def _numbers_from_json(data: list[Any], datatype: Datatype, where: str) -> Array:
    dtype = datatype.numpy_dtype
    if datatype in _FLOATS:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(data, dtype=dtype)
        # JSON numbers are finite: inf/nan here come from overflow, null or strings like "nan".
        if not np.isfinite(array).all():
            raise InvalidInputError(
                f"{where}: data holds null, a non-number or a value out of range for "
                f"{datatype.value}"
            )
        return array
    # Integers and BOOL: numpy raises OverflowError for out-of-range ints but truncates floats
    # silently, so compare with a float64 view of the same data to catch fractions.
    target = np.dtype(np.uint8) if datatype is Datatype.BOOL else dtype
    array = np.asarray(data, dtype=target)
    if array.size and not np.array_equal(array, np.asarray(data, dtype=np.float64)):
        raise InvalidInputError(
            f"{where}: data holds a value that is not a {datatype.value} "
            "(a fraction or out of range)"
        )
    if datatype is Datatype.BOOL:
        if array.size and array.max() > 1:
            raise InvalidInputError(f"{where}: BOOL data must be true/false (or 0/1)")
        return array.view(np.bool_)
    return array


def _bytes_from_json(data: list[Any], infer_shape: bool, where: str) -> Array:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: nesting depth is attacker-controlled
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    try:
        encoded = [s.encode() for s in flat]
    except (AttributeError, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"{where}: BYTES data must be strings") from exc
    shape = _nested_shape(data, len(flat), where) if infer_shape else (len(flat),)
    array = np.empty(len(encoded), dtype=object)
    array[:] = encoded
    return array.reshape(shape)


def _nested_shape(data: list[Any], count: int, where: str) -> tuple[int, ...]:
    shape: list[int] = []
    level: Any = data
    while isinstance(level, list):
        shape.append(len(level))
        level = level[0] if level else None
    if math.prod(shape) != count:
        raise InvalidInputError(f"{where}: nested data is ragged")
    return tuple(shape)


def array_from_raw(
    buffer: bytes | memoryview, datatype: Datatype, shape: tuple[int, ...], where: str
) -> Array:
    """Raw (binary) tensor bytes as an array; a zero-copy, read-only view where possible."""
    count = math.prod(shape)
    if datatype is Datatype.BYTES:
        return _bytes_from_raw(buffer, count, where).reshape(shape)
    dtype = _WIRE_DTYPES[datatype]
    if len(buffer) != count * dtype.itemsize:
        raise InvalidInputError(
            f"{where}: binary_data_size is {len(buffer)} bytes but shape {list(shape)} of "
            f"{datatype.value} needs {count * dtype.itemsize}"
        )
    if datatype is Datatype.BOOL:
        raw = np.frombuffer(buffer, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise InvalidInputError(f"{where}: BOOL binary data must be bytes 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    array = np.frombuffer(buffer, dtype=dtype)
    if not _LITTLE_ENDIAN:
        array = array.astype(datatype.numpy_dtype)
    return array.reshape(shape)


def _bytes_from_raw(buffer: bytes | memoryview, count: int, where: str) -> Array:
    data = bytes(buffer)
    end = len(data)
    items: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > end:
            raise InvalidInputError(
                f"{where}: binary BYTES data ends after {len(items)} of {count} elements"
            )
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise InvalidInputError(
                f"{where}: binary BYTES element {len(items)} claims {length} bytes, "
                f"only {end - pos} left"
            )
        items.append(data[pos : pos + length])
        pos += length
    if pos != end:
        raise InvalidInputError(
            f"{where}: binary_data_size has {end - pos} bytes left over after {count} elements"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def raw_from_array(array: Array, datatype: Datatype) -> bytes | memoryview:
    """An array in the raw wire layout (a buffer over the array's memory when already in it)."""
    if datatype is Datatype.BYTES:
        parts: list[bytes] = []
        for item in array.flat:
            data = _as_bytes(item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    wire = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[datatype]).reshape(-1)
    return wire.data.cast("B") if wire.size else b""


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    raise InferenceError(f"a BYTES output holds a {type(item).__name__}, not bytes or str")


def strings_from_array(array: Array) -> list[str] | None:
    """A BYTES array as a flat list of str, or None when an element is not valid UTF-8."""
    out: list[str] = []
    for item in array.flat:
        if isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(_as_bytes(item).decode())
        except UnicodeDecodeError:
            return None
    return out


def json_ready(array: Array) -> Array:
    """A numeric array flattened into a form ``orjson.OPT_SERIALIZE_NUMPY`` serialises."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array).reshape(-1)


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
    """Parse JSON or raise InvalidInputError naming ``what``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from exc


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
