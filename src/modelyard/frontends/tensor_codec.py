"""Tensors on the Open Inference Protocol V2 wire: JSON ``data`` and the raw (binary) layout <->
numpy arrays, with the ``datatype`` and ``shape`` fields they come with.

The raw layout is the same for the REST binary tensor data extension and gRPC
``raw_input_contents``/``raw_output_contents``: little-endian, row-major, no padding; BOOL is one
byte 0/1; a BYTES element is a 4-byte little-endian length followed by its bytes.

Decoding is strict where it is cheap to be and vectorised everywhere else: numeric JSON ``data``
goes through one ``np.asarray`` with the target dtype (integers get a second float64 pass to reject
fractions), binary data is a zero-copy ``np.frombuffer`` view of the request body (read-only).
Every malformed field raises :class:`~modelyard.errors.InvalidInputError` naming the field.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from modelyard.errors import InferenceError, InvalidInputError, PayloadTooLargeError
from modelyard.types import Array, Datatype

BINARY_DATA_SIZE = "binary_data_size"
"""Input/output parameter: the tensor travels as this many bytes after the JSON header."""

_DATATYPES: dict[str, Datatype] = {d.value: d for d in Datatype}
_WIRE_DTYPES: dict[Datatype, np.dtype[Any]] = {
    d: d.numpy_dtype.newbyteorder("<") for d in Datatype if d is not Datatype.BYTES
}
_LITTLE_ENDIAN = sys.byteorder == "little"
_LENGTH = struct.Struct("<I")
#: The most dimensions a tensor may have: what every supported numpy (>= 1.26) can represent.
MAX_DIMS = 32
#: numpy refuses a shape whose non-zero dimensions times the item size (at most 8) pass
#: 2**63 - 1, even when another dimension is 0; the element limit never goes past this.
_NUMPY_MAX_ELEMENTS = (2**63 - 1) // 8
_UINT64_MAX = 2**64 - 1
_FLOATS = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64})


def parse_datatype(value: object, where: str) -> Datatype:
    """The :class:`Datatype` named by a wire ``datatype`` field."""
    datatype = _DATATYPES.get(value) if isinstance(value, str) else None
    if datatype is None:
        raise InvalidInputError(
            f"{where}: datatype must be one of {', '.join(_DATATYPES)}, got {value!r}"
        )
    return datatype


def config_datatype(datatype: Datatype) -> str:
    """A datatype's name in a model configuration (Triton's ``DataType`` enum): ``TYPE_`` and the
    V2 name, except BYTES, which Triton's configuration calls ``TYPE_STRING``."""
    return "TYPE_STRING" if datatype is Datatype.BYTES else f"TYPE_{datatype.value}"


def parse_shape(value: object, where: str, max_elements: int) -> tuple[tuple[int, ...], int]:
    """A wire ``shape`` as a tuple plus its element count, within ``max_elements``."""
    if not isinstance(value, list) or not all(
        type(d) is int and d >= 0
        for d in value  # bool is an int subclass: exclude it
    ):
        raise InvalidInputError(
            f"{where}: shape must be a list of non-negative integers, got {value!r}"
        )
    shape = tuple(value)
    return shape, check_shape(shape, where, max_elements)


def check_shape(shape: tuple[int, ...], where: str, max_elements: int) -> int:
    """The element count of a wire ``shape`` (REST or gRPC), which must be one numpy can hold
    within ``max_elements``. An empty tensor is no exception: numpy refuses shapes whose
    non-zero dimensions multiply past its address space even with no elements, so those must
    fit the limit as well."""
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"{where}: shape {shape_text(shape)} has a negative dimension")
    if len(shape) > MAX_DIMS:
        raise InvalidInputError(
            f"{where}: shape has {len(shape)} dimensions, more than the {MAX_DIMS} supported"
        )
    limit = min(max_elements, _NUMPY_MAX_ELEMENTS)
    count = math.prod(shape)
    extent = count or math.prod(d for d in shape if d)
    if extent > limit:
        amount = str(extent) if extent <= _UINT64_MAX else "more than 2**64"
        has = "has" if count else "is too large: without its zero dimensions it has"
        raise PayloadTooLargeError(
            f"{where}: shape {shape_text(shape)} {has} {amount} elements, "
            f"more than the limit of {limit}"
        )
    return count


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape for an error message: in full when short, else its first dimensions."""
    if len(shape) <= MAX_DIMS:
        return str(list(shape))
    return f"[{', '.join(map(str, shape[:8]))}, ... ({len(shape)} dimensions)]"


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
        # inf/nan come from NaN/Infinity literals (Triton's JSON, Python's json.dumps), or from
        # null, strings like "nan" and overflow: only the literals are kept.
        if not np.isfinite(array).all() and not _literally_nonfinite(data, array):
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


def _literally_nonfinite(data: list[Any], array: Array) -> bool:
    """Whether every non-finite element of ``array`` (made from the nested lists ``data``, so
    of their shape) was a non-finite float in ``data``: a NaN/Infinity literal, not null, a
    string or a finite number out of the datatype's range. Looks at those elements only."""
    for index in np.argwhere(~np.isfinite(array)):
        value: Any = data
        for i in index:
            value = value[i]
        if type(value) is not float or math.isfinite(value):
            return False
    return True


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
    except AttributeError as exc:
        raise InvalidInputError(f"{where}: BYTES data must be strings") from exc
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where}: BYTES data holds a string that is not valid Unicode (a lone surrogate)"
        ) from exc
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
        array = split_bytes(bytes(buffer), count, where, kind="binary", size_field=BINARY_DATA_SIZE)
        return array.reshape(shape)
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


def split_bytes(data: bytes, count: int, where: str, *, kind: str, size_field: str) -> Array:
    """``count`` BYTES elements from their raw layout (each a 4-byte little-endian length, then
    its bytes) as a 1-D object array of bytes. ``kind`` (``binary``, ``raw``) and ``size_field``
    (the field that sized ``data``) name the data in errors."""
    end = len(data)
    items: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > end:
            raise InvalidInputError(
                f"{where}: {kind} BYTES data ends after {len(items)} of {count} elements"
            )
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise InvalidInputError(
                f"{where}: {kind} BYTES element {len(items)} claims {length} bytes, "
                f"only {end - pos} left"
            )
        items.append(data[pos : pos + length])
        pos += length
    if pos != end:
        raise InvalidInputError(
            f"{where}: {size_field} has {end - pos} bytes left over after {count} elements"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def join_bytes(items: Iterable[bytes]) -> bytes:
    """BYTES elements in the raw layout, each prefixed with its length (4 bytes, little-endian)."""
    parts: list[bytes] = []
    for data in items:
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def raw_from_array(array: Array, datatype: Datatype) -> bytes | memoryview:
    """An array in the raw wire layout (a buffer over the array's memory when already in it)."""
    if datatype is Datatype.BYTES:
        return join_bytes(_as_bytes(item) for item in array.flat)
    wire = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[datatype]).reshape(-1)
    return wire.data.cast("B") if wire.size else b""


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        try:
            return item.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise InferenceError(
                f"a BYTES output holds a str that UTF-8 cannot encode ({exc.reason})"
            ) from exc
    raise InferenceError(f"a BYTES output holds a {type(item).__name__}, not bytes or str")


def strings_from_array(array: Array) -> list[str] | None:
    """A BYTES array as a flat list of str, or None when an element is not valid UTF-8."""
    out: list[str] = []
    for item in array.flat:
        if isinstance(item, str):
            if not item.isascii() and not _utf8_encodable(item):
                return None  # as binary data, where _as_bytes names the problem
            out.append(item)
            continue
        try:
            out.append(_as_bytes(item).decode())
        except UnicodeDecodeError:
            return None
    return out


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def json_ready(array: Array) -> Array:
    """A numeric array flattened into a form ``orjson.OPT_SERIALIZE_NUMPY`` serialises."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array).reshape(-1)
