"""Property-based (hypothesis) robustness of grpc_codec, in-process.

* Any ``ModelInferRequest`` decodes to an InferRequest or raises InvalidInputError (the module's
  promise; PayloadTooLargeError is one) -- never another exception, and never an allocation sized
  by what the request claims rather than by what it carries.
* Round trips and responses: ``test_codec_roundtrip_fuzz.py``.

The properties run derandomized with no example database, so CI sees the same examples every run.
Each bug they found has a plain example-based regression test next to the property.
"""

from __future__ import annotations

import math
import re
import struct
import tracemalloc
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInputError, PayloadTooLargeError
from modelyard.frontends import grpc_codec as codec
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.types import Datatype, InferRequest
from tests.strategies import weighted

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None)
ROUND_TRIP = settings(max_examples=25, deadline=None, derandomize=True, database=None)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1
BIG_LIMIT = 16 * 1024 * 1024  # Settings.max_tensor_elements' default
LIMITS = st.sampled_from([1, 16, 4096, BIG_LIMIT, 2**62])  # the last, beyond what numpy can hold

# Decoding may allocate in proportion to what the message carries (numpy arrays, Python objects
# for typed contents), never to what its shapes claim: a tensor of BIG_LIMIT elements is >= 16 MiB.
ALLOC_PER_WIRE_BYTE = 64
ALLOC_SLACK = 256 * 1024

# Where each datatype's elements go in InferTensorContents (the V2 gRPC spec; FP16 has no field).
CONTENTS_FIELD = {
    Datatype.BOOL: "bool_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
# Any value each field can hold on the wire.
FIELD_ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "bool_contents": st.booleans(),
    "int_contents": st.one_of(
        st.integers(-200, 70000), st.sampled_from([INT32_MIN, INT32_MAX, -129, 128, 256])
    ),
    "int64_contents": st.integers(INT64_MIN, INT64_MAX),
    "uint_contents": st.one_of(st.integers(0, 70000), st.sampled_from([UINT32_MAX, 256])),
    "uint64_contents": st.integers(0, UINT64_MAX),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}
FIELDS = sorted(FIELD_ELEMENTS)


VALID_DATATYPES = [d.value for d in Datatype]
DATATYPES = weighted(
    (18, st.sampled_from(VALID_DATATYPES)),
    (
        1,
        st.sampled_from(
            ["", "fp32", "FLOAT32", "BF16", "TYPE_FP32", "STRING", "BYTES ", "FP32\x00"]
        ),
    ),
    (1, st.text(max_size=6)),
)
HUGE_DIMS = [2**31, 2**32, 2**40, 2**62, INT64_MAX]
DIMS = st.one_of(
    st.integers(0, 4),
    st.integers(-3, -1),
    st.integers(5, 5000),
    st.sampled_from([4096, 2**20, 2**24, *HUGE_DIMS, INT64_MIN]),
    st.integers(INT64_MIN, INT64_MAX),
)


def with_a_zero(dims: list[int]) -> st.SearchStrategy[list[int]]:
    return st.sampled_from([dims, dims, [0, *dims], [*dims, 0]])


SHAPES = weighted(
    (8, st.lists(st.integers(0, 4), max_size=4)),  # ordinary
    (2, st.lists(st.sampled_from([1, 7, 64, 1000, 4096]), min_size=2, max_size=3)),  # big claims
    (2, st.lists(DIMS, max_size=6)),  # hostile
    (
        1,
        st.sampled_from([33, 64, 65, 100]).flatmap(  # many dimensions
            lambda n: st.lists(st.sampled_from([0, 1, 1, 1, 2]), min_size=n, max_size=n)
        ),
    ),
    (
        1,
        st.sampled_from([1, 2, 3, 33, 65, 400]).flatmap(  # many huge dimensions
            lambda n: st.lists(st.sampled_from(HUGE_DIMS), min_size=n, max_size=n).flatmap(
                with_a_zero
            )
        ),
    ),
)
NAMES = weighted(
    (18, st.sampled_from(["x", "y", "INPUT0", "OUTPUT0"])),
    (1, st.just("")),
    (1, st.text(max_size=6)),
)
PARAMETER_KEYS = st.one_of(
    st.sampled_from(
        [
            "shared_memory_region",
            "shared_memory_byte_size",
            "shared_memory_offset",
            "binary_data_size",
            "binary_data",
            "timeout",
            "classification",
            "priority",
            "sequence_id",
            "",
        ]
    ),
    st.text(max_size=6),
)
PARAMETER_VALUES = weighted(
    (
        9,
        st.one_of(
            st.tuples(st.just("bool_param"), st.booleans()),
            st.tuples(st.just("int64_param"), st.integers(INT64_MIN, INT64_MAX)),
            st.tuples(st.just("uint64_param"), st.integers(0, UINT64_MAX)),
            st.tuples(st.just("double_param"), st.floats()),
            st.tuples(st.just("string_param"), st.text(max_size=8)),
        ),
    ),
    (1, st.none()),  # present, with no value set
)
PARAMETERS = weighted(
    (9, st.just({})), (1, st.dictionaries(PARAMETER_KEYS, PARAMETER_VALUES, max_size=3))
)


def fill_parameters(target: Any, params: Mapping[str, tuple[str, Any] | None]) -> None:
    for key, choice in params.items():
        if choice is None:
            target[key].SetInParent()
        else:
            setattr(target[key], choice[0], choice[1])


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


@st.composite
def corrupted(draw: st.DrawFn, blob: bytes) -> bytes:
    how = draw(st.sampled_from(["cut", "extend", "huge length"]))
    if how == "cut":
        return blob[: draw(st.integers(0, max(len(blob) - 1, 0)))]
    if how == "extend":
        return blob + draw(st.binary(min_size=1, max_size=5))
    return struct.pack("<I", draw(st.sampled_from([2**31, UINT32_MAX]))) + blob[4:]


def raw_blobs(datatype: str, n: int) -> st.SearchStrategy[bytes]:
    """Raw data for ``n`` elements of ``datatype``: well-formed, damaged, or just bytes."""
    if datatype == "BYTES":
        joined = st.lists(st.binary(max_size=6), min_size=n, max_size=n).map(length_prefixed)
        return st.one_of(joined, joined.flatmap(corrupted), st.binary(max_size=32))
    size = Datatype(datatype).itemsize * n if datatype in VALID_DATATYPES else n
    fitting = st.binary(min_size=size, max_size=size)
    if datatype == "BOOL":
        fitting = st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n).map(bytes) | fitting
    return st.one_of(fitting, st.binary(max_size=size + 9))


@st.composite
def input_tensors(
    draw: st.DrawFn, raw: bool
) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes]:
    """One input and the raw blob that would go with it (used only when ``raw``)."""
    datatype = draw(DATATYPES)
    shape = draw(SHAPES)
    tensor = pb.ModelInferRequest.InferInputTensor(name=draw(NAMES), datatype=datatype, shape=shape)
    fill_parameters(tensor.parameters, draw(PARAMETERS))
    claimed = math.prod(shape) if min(shape, default=0) >= 0 else -1
    # Usually send as many elements as the shape claims (when that is small), else any number.
    fits = draw(weighted((9, st.just(True)), (1, st.just(False))))
    n = claimed if 0 <= claimed <= 32 and fits else draw(st.integers(0, 8))
    modes = ["none"] * 9 + ["any"] if raw else ["none", "typed", "typed", "any", "two"]
    mode = draw(st.sampled_from(modes))
    fields: list[str] = []
    if mode == "typed" and datatype in VALID_DATATYPES and Datatype(datatype) in CONTENTS_FIELD:
        fields = [CONTENTS_FIELD[Datatype(datatype)]]
    elif mode in ("typed", "any"):
        fields = [draw(st.sampled_from(FIELDS))]
    elif mode == "two":
        fields = draw(st.lists(st.sampled_from(FIELDS), min_size=2, max_size=2, unique=True))
    for field in fields:
        values = draw(st.lists(FIELD_ELEMENTS[field], min_size=n, max_size=n))
        getattr(tensor.contents, field).extend(values)
    return tensor, draw(raw_blobs(datatype, n))


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    raw_mode = draw(st.sampled_from(["none", "none", "per input", "per input", "random"]))
    pairs = draw(st.lists(input_tensors(raw=raw_mode == "per input"), max_size=4))
    if draw(st.booleans()):  # distinct names, so that every input gets looked at
        for index, (tensor, _) in enumerate(pairs):
            tensor.name = f"in{index}"
    msg = pb.ModelInferRequest(
        model_name=draw(st.text(max_size=8)),
        model_version=draw(st.text(max_size=3)),
        id=draw(st.text(max_size=8)),
        inputs=[tensor for tensor, _ in pairs],
    )
    if raw_mode == "per input":
        msg.raw_input_contents.extend(blob for _, blob in pairs)
    elif raw_mode == "random":
        msg.raw_input_contents.extend(draw(st.lists(st.binary(max_size=16), max_size=5)))
    fill_parameters(msg.parameters, draw(PARAMETERS))
    outputs = st.lists(st.tuples(NAMES, PARAMETERS), max_size=3)
    distinct = st.lists(st.tuples(NAMES, PARAMETERS), max_size=3, unique_by=lambda out: out[0])
    for name, params in draw(weighted((3, distinct), (1, outputs))):
        fill_parameters(msg.outputs.add(name=name).parameters, params)
    return msg


def decode_measured(msg: pb.ModelInferRequest, limit: int) -> tuple[InferRequest | None, int]:
    """Decode ``msg``; the request (None when refused) and the peak bytes allocated meanwhile."""
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
    else:
        tracemalloc.start()
        start = 0
    try:
        request: InferRequest | None = codec.decode_infer_request(msg, max_tensor_elements=limit)
    except InvalidInputError as exc:  # the only exception decoding may raise
        assert exc.message
        event(re.sub(r"'[^']*'|\[[^]]*\]|\d+", "_", exc.message))  # which check refused it
        request = None
    finally:
        peak = tracemalloc.get_traced_memory()[1] - start
        if not was_tracing:
            tracemalloc.stop()
    return request, peak


@FUZZ
@given(msg=infer_requests(), limit=LIMITS)
def test_any_request_decodes_or_is_refused(msg: pb.ModelInferRequest, limit: int) -> None:
    request, peak = decode_measured(msg, limit)
    budget = ALLOC_PER_WIRE_BYTE * msg.ByteSize() + ALLOC_SLACK
    assert peak <= budget, f"decoding a {msg.ByteSize()}-byte message allocated {peak} bytes"
    if request is None:
        return
    event("decoded")
    assert list(request.inputs) == [tensor.name for tensor in msg.inputs]
    for index, tensor in enumerate(msg.inputs):
        array = request.inputs[tensor.name]
        assert array.shape == tuple(tensor.shape)
        assert array.dtype == Datatype(tensor.datatype).numpy_dtype
        assert array.size <= limit
        if msg.raw_input_contents and tensor.datatype != "BYTES":
            assert array.tobytes() == msg.raw_input_contents[index]
    assert request.id == (msg.id or None)
    assert request.outputs == ([out.name for out in msg.outputs] or None)


@FUZZ
@given(data=st.data(), raw=st.booleans(), limit=LIMITS)
def test_any_input_decodes_or_is_refused(data: st.DataObject, raw: bool, limit: int) -> None:
    """The same, one input at a time: the checks on its data are reached far more often."""
    tensor, blob = data.draw(input_tensors(raw=raw))
    msg = pb.ModelInferRequest(inputs=[tensor], raw_input_contents=[blob] if raw else [])
    request, peak = decode_measured(msg, limit)
    assert peak <= ALLOC_PER_WIRE_BYTE * msg.ByteSize() + ALLOC_SLACK
    if request is not None:
        event("decoded")
        (array,) = request.inputs.values()
        assert array.shape == tuple(tensor.shape)
        assert array.dtype == Datatype(tensor.datatype).numpy_dtype


# Regressions found by the properties above.
def one_input(datatype: str, shape: list[int], raw: bytes | None = None) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype=datatype, shape=shape)
    if raw is not None:
        msg.raw_input_contents.append(raw)
    return msg


@pytest.mark.parametrize("raw", [None, b""])
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_empty_tensor_with_huge_dimensions_is_too_large(raw: bytes | None, datatype: str) -> None:
    # numpy cannot represent these shapes even with no elements ("array is too big").
    msg = one_input(datatype, [0, 2**62, 2**62], raw)
    with pytest.raises(PayloadTooLargeError, match=r"input 'x': shape \[0, 4611686018427387904"):
        codec.decode_infer_request(msg, max_tensor_elements=4096)


@pytest.mark.parametrize("dim", [2**60, 2**62])
def test_empty_tensor_beyond_numpy_under_a_huge_limit(dim: int) -> None:
    msg = one_input("FP64", [0, dim])
    with pytest.raises(PayloadTooLargeError, match=f"it has {dim} elements"):
        codec.decode_infer_request(msg, max_tensor_elements=2**62)


def test_empty_tensor_within_the_limit_still_decodes() -> None:
    request = codec.decode_infer_request(one_input("FP32", [0, 3, 5]), max_tensor_elements=15)
    assert request.inputs["x"].shape == (0, 3, 5)


@pytest.mark.parametrize(("shape", "raw"), [([1] * 65, b"\0" * 4), ([0] * 40, None)])
def test_too_many_dimensions(shape: list[int], raw: bytes | None) -> None:
    msg = one_input("FP32", shape, raw)
    with pytest.raises(InvalidInputError, match=f"input 'x': shape has {len(shape)} dimensions"):
        codec.decode_infer_request(msg, max_tensor_elements=4096)


def test_thirty_two_dimensions_decode() -> None:
    msg = one_input("INT8", [1] * 31 + [2], b"\x01\x02")
    assert codec.decode_infer_request(msg, max_tensor_elements=4).inputs["x"].ndim == 32


def test_astronomical_element_count_is_too_large() -> None:
    msg = one_input("FP32", [2**62] * 4)
    with pytest.raises(PayloadTooLargeError, match=r"has more than 2\*\*64 elements, more than"):
        codec.decode_infer_request(msg, max_tensor_elements=4096)


def test_hundreds_of_huge_dimensions() -> None:
    # The element count has ~5700 digits, more than Python turns into text by default.
    msg = one_input("FP32", [2**63 - 1] * 300)
    with pytest.raises(InvalidInputError, match="shape has 300 dimensions") as info:
        codec.decode_infer_request(msg, max_tensor_elements=4096)
    assert len(info.value.message) < 100


def test_negative_dimension_among_hundreds() -> None:
    msg = one_input("FP32", [1] * 299 + [-1])
    with pytest.raises(
        InvalidInputError, match=r"\.\.\. \(300 dimensions\)\] has a negative"
    ) as info:
        codec.decode_infer_request(msg, max_tensor_elements=4096)
    assert len(info.value.message) < 100
