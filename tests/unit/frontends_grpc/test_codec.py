"""grpc_codec in-process: protobuf <-> InferRequest/InferResponse, no sockets."""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InferenceError, InvalidInputError, PayloadTooLargeError
from modelyard.frontends import grpc_codec as codec
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.types import Datatype, InferResponse, ModelMetadata, RepositoryEntry, TensorSpec

LIMIT = 1000


def decode(msg: pb.ModelInferRequest) -> Any:
    return codec.decode_infer_request(msg, max_tensor_elements=LIMIT)


def one_input(datatype: str, shape: list[int]) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", id="r1")
    msg.inputs.add(name="x", datatype=datatype, shape=shape)
    return msg


def test_raw_input_is_zero_copy_and_little_endian() -> None:
    msg = one_input("INT32", [2, 2])
    msg.raw_input_contents.append(struct.pack("<4i", 1, -2, 3, 2**31 - 1))
    array = decode(msg).inputs["x"]
    assert array.tolist() == [[1, -2], [3, 2**31 - 1]]
    assert not array.flags.writeable  # a view on the request's bytes, not a copy


@pytest.mark.parametrize(
    ("datatype", "field", "values", "expected"),
    [
        ("BOOL", "bool_contents", [True, False], [True, False]),
        ("UINT8", "uint_contents", [0, 255], [0, 255]),
        ("UINT16", "uint_contents", [0, 65535], [0, 65535]),
        ("UINT32", "uint_contents", [0, 2**32 - 1], [0, 2**32 - 1]),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], [0, 2**64 - 1]),
        ("INT8", "int_contents", [-128, 127], [-128, 127]),
        ("INT16", "int_contents", [-(2**15), 2**15 - 1], [-(2**15), 2**15 - 1]),
        ("INT32", "int_contents", [-(2**31), 2**31 - 1], [-(2**31), 2**31 - 1]),
        ("INT64", "int64_contents", [-(2**63), 2**63 - 1], [-(2**63), 2**63 - 1]),
        ("FP32", "fp32_contents", [1.5, -0.25], [1.5, -0.25]),
        ("FP64", "fp64_contents", [1e300, -1e-300], [1e300, -1e-300]),
        ("BYTES", "bytes_contents", [b"a", b"\xff"], [b"a", b"\xff"]),
    ],
)
def test_typed_contents(datatype: str, field: str, values: list[Any], expected: list[Any]) -> None:
    msg = one_input(datatype, [2])
    getattr(msg.inputs[0].contents, field).extend(values)
    array = decode(msg).inputs["x"]
    assert array.dtype == Datatype(datatype).numpy_dtype
    assert array.tolist() == expected


def test_raw_bytes_elements() -> None:
    msg = one_input("BYTES", [3])
    msg.raw_input_contents.append(
        b"".join(struct.pack("<I", len(e)) + e for e in (b"ab", b"", b"c"))
    )
    assert decode(msg).inputs["x"].tolist() == [b"ab", b"", b"c"]


def test_request_fields() -> None:
    msg = one_input("FP32", [1])
    msg.inputs[0].contents.fp32_contents.append(1.0)
    msg.inputs[0].parameters["scale"].double_param = 0.5
    msg.parameters["timeout"].int64_param = 10
    msg.parameters["flag"].bool_param = True
    msg.parameters["big"].uint64_param = 2**64 - 1
    out = msg.outputs.add(name="y")
    out.parameters["classification"].int64_param = 3
    request = decode(msg)
    assert request.id == "r1"
    assert request.parameters == {"timeout": 10, "flag": True, "big": 2**64 - 1}
    assert request.input_parameters == {"x": {"scale": 0.5}}
    assert request.outputs == ["y"]
    assert request.output_parameters == {"y": {"classification": 3}}


def test_no_requested_outputs_means_all() -> None:
    msg = one_input("FP32", [0])
    request = decode(msg)
    assert request.outputs is None
    assert request.id == "r1"


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda m: m.inputs.add(name="x", datatype="FP32", shape=[0]), InvalidInputError, "twice"),
        (lambda m: m.outputs.add(name=""), InvalidInputError, "outputs[0]"),
        (lambda m: [m.outputs.add(name="y") for _ in range(2)], InvalidInputError, "twice"),
        (lambda m: setattr(m.inputs[0], "name", ""), InvalidInputError, "inputs[0]"),
        (lambda m: m.inputs[0].shape.__setitem__(0, LIMIT + 1), PayloadTooLargeError, "1001"),
    ],
)
def test_request_errors(mutate: Any, error: type[Exception], fragment: str) -> None:
    msg = one_input("FP32", [0])
    mutate(msg)
    with pytest.raises(error, match=re.escape(fragment)):
        decode(msg)


def test_contents_with_several_fields() -> None:
    msg = one_input("INT32", [1])
    msg.inputs[0].contents.int_contents.append(1)
    msg.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInputError, match="several fields"):
        decode(msg)


# ---- responses ------------------------------------------------------------------------------
def test_encode_response_raw_outputs() -> None:
    outputs = {
        "f": np.array([[1.0, 2.0]], dtype=np.float32),
        "s": np.array(["é", "b"]),  # unicode strings go out as UTF-8 BYTES
        "o": np.array([b"x", 7], dtype=object),
        "t": np.arange(6, dtype=">i8").reshape(2, 3).T,  # big-endian, not contiguous
    }
    msg = codec.encode_infer_response(InferResponse("m", "3", outputs), request_id="r9")
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "3", "r9")
    assert [(o.name, o.datatype, list(o.shape)) for o in msg.outputs] == [
        ("f", "FP32", [1, 2]),
        ("s", "BYTES", [2]),
        ("o", "BYTES", [2]),
        ("t", "INT64", [3, 2]),
    ]
    raw = msg.raw_output_contents
    assert np.frombuffer(raw[0], "<f4").tolist() == [1.0, 2.0]
    assert raw[1] == struct.pack("<I", 2) + "é".encode() + struct.pack("<I", 1) + b"b"
    assert raw[2] == struct.pack("<I", 1) + b"x" + struct.pack("<I", 1) + b"7"
    assert np.frombuffer(raw[3], "<i8").tolist() == [0, 3, 1, 4, 2, 5]


def test_response_id_prefers_the_dataplane() -> None:
    msg = codec.encode_infer_response(InferResponse("m", "1", {}, id="own"), request_id="r")
    assert msg.id == "own"


def test_unsupported_output_dtype() -> None:
    response = InferResponse("m", "1", {"c": np.array([1j])})
    with pytest.raises(InferenceError, match="'c'"):
        codec.encode_infer_response(response)


def test_encode_parameters() -> None:
    msg = pb.ModelInferResponse()
    values = {
        "b": True,
        "i": np.int64(-3),
        "u": 2**64 - 1,
        "f": np.float32(0.5),
        "s": "x",
        "l": [1, 2],
    }
    codec.encode_parameters(values, msg.parameters)
    decoded = codec.decode_parameters(msg.parameters, "the response")
    assert decoded == {"b": True, "i": -3, "u": 2**64 - 1, "f": 0.5, "s": "x", "l": "[1,2]"}
    assert msg.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"


def test_encode_metadata_and_index() -> None:
    spec = TensorSpec(name="x", datatype=Datatype.FP16, shape=(-1, 4))
    meta = codec.encode_model_metadata(ModelMetadata("m", ("1", "2"), "onnx", (spec,), ()))
    assert (meta.name, list(meta.versions), meta.platform) == ("m", ["1", "2"], "onnx")
    assert (meta.inputs[0].datatype, list(meta.inputs[0].shape)) == ("FP16", [-1, 4])
    index = codec.encode_repository_index([RepositoryEntry("m", "2", "LOADING", "warming up")])
    entry = index.models[0]
    assert (entry.name, entry.version, entry.state, entry.reason) == (
        "m",
        "2",
        "LOADING",
        "warming up",
    )
