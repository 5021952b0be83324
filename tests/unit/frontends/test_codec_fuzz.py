"""Property tests: whatever bytes a client sends as a V2 REST inference request, decoding either
gives a request or raises a ModelYardError (a 4xx with a message), never anything else (which
the server would answer as a 500), and valid tensors of every datatype survive a round trip."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelyard.errors import (
    InferenceError,
    InvalidInputError,
    ModelYardError,
    PayloadTooLargeError,
)
from modelyard.frontends.codec import decode_infer_request, encode_infer_response
from modelyard.frontends.tensor_codec import join_bytes, parse_shape
from modelyard.types import Datatype, InferRequest, InferResponse
from tests.strategies import one_in

MAX = 1 << 16
FUZZ = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DATATYPES = [d.value for d in Datatype]
# Scalars JSON can hold, hostile ones included: huge ints, floats at the limits, nan-like text.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "nan", "inf", "1", "1.5", "héllo", "\x00"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
dims = st.one_of(
    st.integers(min_value=0, max_value=4),
    st.sampled_from([-1, 2**31, 2**40, 2**63, 2**70]),
    st.sampled_from([True, 1.0, "2"]),
)
shapes = st.one_of(st.lists(dims, max_size=5), st.just([0] * 70), json_values)
# Flat and nested data of fitting and unfitting length.
datas = st.one_of(
    st.lists(scalars, max_size=8),
    st.lists(st.lists(scalars, max_size=3), max_size=3),
    json_values,
)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A valid input (JSON or binary data, with its binary part) with 0-2 fields made hostile:
    each check is reached, then one thing in it is wrong."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    count = math.prod(shape)
    item: dict[str, Any] = {"name": draw(st.sampled_from("abcdefgh")), "datatype": datatype}
    item["shape"] = shape
    binary = b""
    if datatype == "BYTES":
        values: list[Any] = draw(st.lists(st.text(max_size=3), min_size=count, max_size=count))
    elif datatype == "BOOL":
        values = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    else:
        values = draw(st.lists(st.integers(0, 100), min_size=count, max_size=count))
    if draw(st.booleans()):
        item["data"] = values
    else:
        if datatype == "BYTES":
            binary = join_bytes(v.encode() for v in values)
        else:
            binary = np.asarray(values, dtype=Datatype(datatype).numpy_dtype).tobytes()
        item["parameters"] = {"binary_data_size": len(binary)}
    hostile = {
        "name": st.sampled_from(["", None, 3]),
        "datatype": st.one_of(st.sampled_from(["fp32", "FP8", "", "STRING"]), json_values),
        "shape": st.one_of(st.lists(dims, min_size=1, max_size=4), st.just([0] * 70), json_values),
        "data": datas,
        "parameters": st.one_of(
            json_values,
            st.fixed_dictionaries({"binary_data_size": st.sampled_from([-1, 2**70, 1.5, "4", 99])}),
            st.just({"shared_memory_region": "r"}),
        ),
    }
    for field in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=2, unique=True)):
        if draw(one_in(5)):
            item.pop(field, None)  # missing instead of wrong
        else:
            item[field] = draw(hostile[field])
    if draw(one_in(5)):
        binary = draw(st.binary(max_size=12))  # binary data that does not fit
    return item, binary


@st.composite
def requests(draw: st.DrawFn) -> tuple[Any, bytes]:
    """A request document and the binary data after it."""
    drawn = draw(st.lists(inputs(), max_size=3))
    doc: dict[str, Any] = {"inputs": [item for item, _ in drawn]}
    if draw(st.booleans()):
        doc["id"] = draw(json_values if draw(one_in(5)) else st.text(max_size=4))
    if draw(st.booleans()):
        doc["parameters"] = draw(
            json_values if draw(one_in(5)) else st.dictionaries(st.text(max_size=3), scalars)
        )
    if draw(st.booleans()):
        names = st.text(max_size=3) if draw(one_in(5)) else json_values
        outputs = st.lists(st.fixed_dictionaries({"name": names}), max_size=2)
        doc["outputs"] = draw(json_values if draw(one_in(5)) else outputs)
    if draw(one_in(10)):
        return draw(json_values), b""  # not even an object with inputs
    return doc, b"".join(data for _, data in drawn)


@FUZZ
@given(case=requests(), split=st.sampled_from([None, None, None, None, None, 0, -1, 1]))
def test_any_request_body_decodes_or_is_a_client_error(
    case: tuple[Any, bytes], split: int | None
) -> None:
    doc, tail = case
    header = json.dumps(doc).encode()  # stdlib: it writes integers beyond 64 bits too
    header_length = len(header) + split if split is not None else None
    if header_length is None and tail:
        header_length = len(header)
    try:
        request = decode_infer_request(header + tail, header_length, MAX)
    except ModelYardError as exc:
        assert exc.code.value in {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, exc
        return
    for name, array in request.inputs.items():
        assert isinstance(array, np.ndarray), name
        assert array.size <= MAX


@FUZZ
@given(body=st.binary(max_size=200))
def test_any_bytes_decode_or_are_a_client_error(body: bytes) -> None:
    try:
        decode_infer_request(body, None, MAX)
    except ModelYardError:
        pass


def _wire_arrays() -> st.SearchStrategy[tuple[Datatype, np.ndarray[Any, Any]]]:
    numeric = [d for d in Datatype if d not in (Datatype.BYTES,)]

    def arrays_of(dt: Datatype) -> st.SearchStrategy[tuple[Datatype, np.ndarray[Any, Any]]]:
        shape = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
        if dt is Datatype.BYTES:
            elements = st.binary(max_size=6)
            return hnp.arrays(object, shape, elements=elements).map(lambda a: (dt, a))
        kwargs: dict[str, Any] = {}
        if dt.numpy_dtype.kind == "f":
            kwargs = {"allow_nan": False, "allow_infinity": False}
        elements = hnp.from_dtype(dt.numpy_dtype, **kwargs)
        return hnp.arrays(dt.numpy_dtype, shape, elements=elements).map(lambda a: (dt, a))

    return st.one_of([arrays_of(dt) for dt in [*numeric, Datatype.BYTES]])


@FUZZ
@given(case=_wire_arrays(), binary=st.booleans())
def test_every_datatype_round_trips_through_json_and_binary(
    case: tuple[Datatype, np.ndarray[Any, Any]], binary: bool
) -> None:
    datatype, array = case
    response = InferResponse(model_name="m", model_version="1", outputs={"x": array})
    asked = InferRequest(inputs={}, parameters={"binary_data_output": binary})
    body, json_length = encode_infer_response(response, asked)
    doc = orjson.loads(body[:json_length] if json_length is not None else body)
    (out,) = doc["outputs"]
    assert out["datatype"] == datatype.value and out["shape"] == list(array.shape)
    # The response, turned into a request, decodes to the same tensor.
    item: dict[str, Any] = {"name": "x", "datatype": out["datatype"], "shape": out["shape"]}
    if "data" in out:
        item["data"] = out["data"]
    else:
        item["parameters"] = out["parameters"]
    header = orjson.dumps({"inputs": [item]})
    tail = body[json_length:] if json_length is not None else b""
    decoded = decode_infer_request(header + tail, len(header) if tail else None, MAX).inputs["x"]
    assert decoded.shape == array.shape
    if datatype is Datatype.BYTES:
        assert [bytes(v) for v in decoded.flat] == [bytes(v) for v in array.flat]
    else:
        assert decoded.dtype == array.dtype
        assert np.array_equal(decoded, array)


# ---- what the properties found (example-based regressions) ---------------------------------------
@pytest.mark.parametrize(
    ("shape", "error", "words"),
    [
        # No elements, but numpy cannot make an array with such dimensions.
        ([0, 2**63], PayloadTooLargeError, "without its zero dimensions it has"),
        ([0, MAX + 1], PayloadTooLargeError, "without its zero dimensions it has"),
        ([0, 4096, 4096], PayloadTooLargeError, "without its zero dimensions it has"),
        ([0] * 33, InvalidInputError, "more than the 32 supported"),
    ],
)
def test_shapes_numpy_cannot_hold_are_client_errors(
    shape: list[int], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        parse_shape(shape, "input 'x'", MAX)
    for datatype in ("FP32", "BYTES"):
        doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": []}]}
        with pytest.raises(ModelYardError, match="shape"):  # JSON reads 2**63 as a float
            decode_infer_request(json.dumps(doc).encode(), None, MAX)


def test_the_widest_and_deepest_shapes_allowed_still_decode() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, MAX], "data": []}]}
    assert decode_infer_request(orjson.dumps(doc), None, MAX).inputs["x"].shape == (0, MAX)
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 32, "data": [1.5]}]}
    assert decode_infer_request(orjson.dumps(doc), None, MAX).inputs["x"].ndim == 32


def test_a_str_output_utf8_cannot_encode_is_a_model_error_not_a_crash() -> None:
    response = InferResponse("m", "1", outputs={"y": np.array(["ok", "\ud800"], dtype=object)})
    with pytest.raises(InferenceError, match="UTF-8 cannot encode"):
        encode_infer_response(response, InferRequest(inputs={}))


def test_element_count_over_the_limit_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_shape([MAX, 2], "input 'x'", MAX)
    assert math.prod([MAX, 2]) > MAX


def test_raw_bytes_helper_matches_the_wire_layout() -> None:
    assert join_bytes([b"ab", b""]) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
