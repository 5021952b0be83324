"""Property-based (hypothesis) tests of grpc_codec, in-process: valid tensors of every datatype,
sent as tritonclient sends them (``raw_input_contents``) or in typed ``contents``, decode to an
equal array of the right dtype and shape; every array the server can produce encodes, and its
raw output decodes back to it. (Hostile requests: ``test_codec_fuzz.py``.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import _utils as triton_utils

from modelyard.errors import InferenceError
from modelyard.frontends import grpc_codec as codec
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.types import Array, Datatype, InferResponse
from tests.strategies import weighted
from tests.unit.frontends_grpc.test_codec_fuzz import (
    BIG_LIMIT,
    CONTENTS_FIELD,
    FUZZ,
    INT64_MIN,
    ROUND_TRIP,
    UINT64_MAX,
    one_input,
)

# ---- round trips ----------------------------------------------------------------------------
NUMERIC = [d for d in Datatype if d is not Datatype.BYTES]
ROUND_TRIP_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
BYTES_ARRAYS = hnp.arrays(np.dtype(object), ROUND_TRIP_SHAPES, elements=st.binary(max_size=8))


def elements(datatype: Datatype) -> st.SearchStrategy[Any]:
    """Any value of a numeric datatype, its edge values (extremes, -0.0, inf, NaN) favoured."""
    dtype = datatype.numpy_dtype
    edges: list[Any] = [True, False]
    if dtype.kind == "f":
        finfo = np.finfo(dtype)
        edges = [0.0, -0.0, math.inf, -math.inf, math.nan, float(finfo.max), float(finfo.tiny)]
    elif dtype.kind in "iu":
        iinfo = np.iinfo(dtype)
        edges = [iinfo.min, iinfo.max, 0]
    return st.sampled_from(edges) | hnp.from_dtype(dtype)


def numeric_arrays(datatype: Datatype) -> st.SearchStrategy[Array]:
    return hnp.arrays(datatype.numpy_dtype, ROUND_TRIP_SHAPES, elements=elements(datatype))


def tritonclient_request(array: Array, datatype: Datatype) -> pb.ModelInferRequest:
    """The request tritonclient's gRPC client sends for ``array``, parsed by our proto."""
    infer_input = triton.InferInput("x", list(array.shape), datatype.value)
    infer_input.set_data_from_numpy(array)
    theirs = triton_utils._get_inference_request(
        model_name="m",
        inputs=[infer_input],
        model_version="",
        request_id="r",
        outputs=None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )
    return pb.ModelInferRequest.FromString(theirs.SerializeToString())


def typed_request(array: Array, datatype: Datatype) -> pb.ModelInferRequest:
    msg = one_input(datatype.value, list(array.shape))
    getattr(msg.inputs[0].contents, CONTENTS_FIELD[datatype]).extend(array.reshape(-1).tolist())
    return msg


def decoded_input(msg: pb.ModelInferRequest) -> Array:
    return codec.decode_infer_request(msg, max_tensor_elements=BIG_LIMIT).inputs["x"]


def assert_same_numbers(decoded: Array, expected: Array) -> None:
    np.testing.assert_array_equal(decoded, expected)  # NaN equals NaN here
    if expected.dtype.kind == "f":  # and so does 0.0 -0.0: compare the signs too
        np.testing.assert_array_equal(np.signbit(decoded), np.signbit(expected))


@pytest.mark.parametrize("datatype", NUMERIC, ids=str)
@ROUND_TRIP
@given(data=st.data())
def test_raw_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    array = data.draw(numeric_arrays(datatype))
    decoded = decoded_input(tritonclient_request(array, datatype))
    assert (decoded.dtype, decoded.shape) == (datatype.numpy_dtype, array.shape)
    assert decoded.tobytes() == array.tobytes()  # bit for bit, NaN payloads included


@pytest.mark.parametrize("datatype", [d for d in NUMERIC if d in CONTENTS_FIELD], ids=str)
@ROUND_TRIP
@given(data=st.data())
def test_typed_contents_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    array = data.draw(numeric_arrays(datatype))
    decoded = decoded_input(typed_request(array, datatype))
    assert (decoded.dtype, decoded.shape) == (datatype.numpy_dtype, array.shape)
    assert_same_numbers(decoded, array)


@ROUND_TRIP
@given(array=BYTES_ARRAYS, typed=st.booleans())
def test_bytes_round_trip(array: Array, typed: bool) -> None:
    build = typed_request if typed else tritonclient_request
    decoded = decoded_input(build(array, Datatype.BYTES))
    assert (decoded.dtype, decoded.shape) == (np.dtype(object), array.shape)
    assert decoded.tolist() == array.tolist()


# ---- responses ------------------------------------------------------------------------------
def wire_order(dtype: np.dtype[Any]) -> list[np.dtype[Any]]:
    """``dtype`` in native and, where byte order means anything, big-endian order."""
    return [dtype, dtype.newbyteorder(">")] if dtype.itemsize > 1 else [dtype]


OUTPUT_DTYPES = [dt for d in NUMERIC for dt in wire_order(d.numpy_dtype)]
# Any str the model may hand back, now and then with a lone surrogate (which UTF-8 cannot
# encode; st.text() never makes one).
LONE_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
ANY_TEXT = weighted(
    (29, st.text(max_size=6)),
    (1, st.tuples(st.text(max_size=2), LONE_SURROGATES, st.text(max_size=2)).map("".join)),
)


@st.composite
def output_arrays(draw: st.DrawFn) -> Array:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    kind = draw(st.sampled_from(["numeric", "bytes", "str", "mixed", "unicode", "bytestring"]))
    array: Array
    if kind == "numeric":
        array = draw(hnp.arrays(st.sampled_from(OUTPUT_DTYPES), shape))
    elif kind == "bytes":
        array = draw(hnp.arrays(np.dtype(object), shape, elements=st.binary(max_size=6)))
    elif kind == "str":
        array = draw(hnp.arrays(np.dtype(object), shape, elements=ANY_TEXT))
    elif kind == "mixed":
        elements = st.one_of(st.binary(max_size=4), ANY_TEXT, st.integers(), st.floats())
        array = draw(hnp.arrays(np.dtype(object), shape, elements=elements | st.none()))
    elif kind == "unicode":
        array = draw(hnp.arrays(hnp.unicode_string_dtypes(max_len=4), shape))
    else:
        array = draw(hnp.arrays(hnp.byte_string_dtypes(max_len=4), shape))
    if array.ndim and draw(st.booleans()):  # not C-contiguous
        array = array.T if draw(st.booleans()) else array[::2]
    return array


def as_wire_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    return (item if isinstance(item, str) else str(item)).encode()


def utf8_encodable(array: Array) -> bool:
    return all(
        not isinstance(item, str) or not any(0xD800 <= ord(c) <= 0xDFFF for c in item)
        for item in array.reshape(-1)
    )


def holds_wide_int(value: object) -> bool:
    """True for a list or dict holding an integer beyond 64 bits: it has no (orjson) JSON text."""
    items = value.values() if isinstance(value, dict) else value
    return isinstance(items, Iterable) and any(
        isinstance(item, int) and not INT64_MIN <= item <= UINT64_MAX for item in items
    )


# Response parameters: what the dataplane and the traffic layer put there (texts, numbers,
# flags, JSON-like notes), numpy scalars, and integers beyond 64 bits.
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4))
RESPONSE_PARAMETER_VALUES = st.one_of(
    JSON_SCALARS,
    st.sampled_from([np.int8(-3), np.uint64(UINT64_MAX), np.float32(0.5), np.bool_(True)]),
    st.lists(JSON_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=3),
)


@FUZZ
@given(
    outputs=st.dictionaries(st.text(min_size=1, max_size=4), output_arrays(), max_size=3),
    parameters=st.dictionaries(st.text(max_size=4), RESPONSE_PARAMETER_VALUES, max_size=3),
)
def test_every_server_output_encodes(outputs: dict[str, Array], parameters: dict[str, Any]) -> None:
    response = InferResponse("m", "1", outputs, parameters=parameters)
    try:
        msg = codec.encode_infer_response(response, request_id="r")
    except InferenceError as exc:
        # Only a str that UTF-8 cannot encode may stop an output, and only a wide integer in a
        # list or dict a parameter; the error names the culprit.
        culprits = [f"output {name!r}:" for name, a in outputs.items() if not utf8_encodable(a)]
        culprits += [
            f"response parameter {k!r}" for k, v in parameters.items() if holds_wide_int(v)
        ]
        assert exc.message.startswith(tuple(culprits)), exc
        event("refused")
        return
    msg = pb.ModelInferResponse.FromString(msg.SerializeToString())
    assert [out.name for out in msg.outputs] == list(outputs)
    assert len(msg.raw_output_contents) == len(outputs)
    assert set(msg.parameters) == set(parameters)
    for out, raw in zip(msg.outputs, msg.raw_output_contents, strict=True):
        array = outputs[out.name]
        assert out.datatype == Datatype.from_numpy(array.dtype).value
        assert tuple(out.shape) == array.shape
        # What goes out comes back in: the raw output decodes, as an input, to the same tensor.
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=out.name, datatype=out.datatype, shape=out.shape
        )
        decoded = codec.decode_input(tensor, raw, max_tensor_elements=BIG_LIMIT)
        if out.datatype == "BYTES":
            assert decoded.tolist() == np.vectorize(as_wire_bytes, otypes=[object])(array).tolist()
        else:
            assert decoded.tobytes() == array.astype(array.dtype.newbyteorder("=")).tobytes()


# Regressions found by the property above (the last one by reading the code).
def test_str_output_that_utf8_cannot_encode() -> None:
    response = InferResponse("m", "1", {"y": np.array(["ok", "\ud800"], dtype=object)})
    with pytest.raises(
        InferenceError,
        match=r"output 'y': element 1 is a str that UTF-8 cannot encode \(surrogates",
    ):
        codec.encode_infer_response(response)


@pytest.mark.parametrize("value", [2**64, INT64_MIN - 1, -(2**100)])
def test_response_parameter_beyond_64_bits(value: int) -> None:
    msg = codec.encode_infer_response(InferResponse("m", "1", {}, parameters={"n": value}))
    assert msg.parameters["n"].string_param == str(value)


def test_response_parameter_with_no_json_text() -> None:
    response = InferResponse("m", "1", {}, parameters={"notes": [1, 2**64]})
    with pytest.raises(InferenceError, match="response parameter 'notes' cannot be sent as JSON"):
        codec.encode_infer_response(response)


def test_output_that_is_not_an_ndarray() -> None:
    response = InferResponse("m", "1", {"y": [[1.5, 2.5]]})  # type: ignore[dict-item]
    (out,) = codec.encode_infer_response(response).outputs
    assert (out.datatype, list(out.shape)) == ("FP64", [1, 2])
