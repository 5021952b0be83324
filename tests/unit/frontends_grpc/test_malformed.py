"""Requests the official client would never build, sent with a bare stub: each one gets the
right status and a message naming the culprit, and the server keeps serving."""

from __future__ import annotations

import struct
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.proto import grpc_service_pb2_grpc as pb_grpc
from tests.unit.frontends_grpc.conftest import MAX_TENSOR_ELEMENTS, RunningServer

pytestmark = pytest.mark.conformance

Stub = pb_grpc.GRPCInferenceServiceStub
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def request(
    datatype: str = "INT32", shape: tuple[int, ...] = (1, 2), model: str = "identity_int32"
) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model)
    msg.inputs.add(name="INPUT0", datatype=datatype, shape=list(shape))
    return msg


def with_raw(msg: pb.ModelInferRequest, *blobs: bytes) -> pb.ModelInferRequest:
    msg.raw_input_contents.extend(blobs)
    return msg


def with_contents(msg: pb.ModelInferRequest, **fields: list[object]) -> pb.ModelInferRequest:
    for name, values in fields.items():
        getattr(msg.inputs[0].contents, name).extend(values)
    return msg


def _both() -> pb.ModelInferRequest:
    return with_contents(with_raw(request(), b"\0" * 8), int_contents=[1, 2])


def _shm() -> pb.ModelInferRequest:
    msg = with_raw(request(), b"\0" * 8)
    msg.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    return msg


def _timeout(value: int) -> pb.ModelInferRequest:
    msg = with_raw(request(), b"\0" * 8)
    msg.parameters["timeout"].int64_param = value
    return msg


def _empty_parameter() -> pb.ModelInferRequest:
    msg = with_raw(request(), b"\0" * 8)
    msg.parameters["flag"].SetInParent()
    return msg


def _two_inputs_one_blob() -> pb.ModelInferRequest:
    msg = with_raw(request(), b"\0" * 8)
    msg.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 2])
    return msg


CASES: dict[str, tuple[Callable[[], pb.ModelInferRequest], grpc.StatusCode, str]] = {
    "raw length": (lambda: with_raw(request(), b"\0" * 7), INVALID, "'INPUT0'"),
    "unknown datatype": (lambda: with_raw(request("BF17"), b"\0" * 4), INVALID, "BF17"),
    "both raw and contents": (_both, INVALID, "both"),
    "raw count": (_two_inputs_one_blob, INVALID, "raw_input_contents"),
    "contents count": (lambda: with_contents(request(), int_contents=[1]), INVALID, "'INPUT0'"),
    "contents field": (
        lambda: with_contents(request(), fp32_contents=[1.0, 2.0]),
        INVALID,
        "int_contents",
    ),
    "fp16 contents": (
        lambda: with_contents(request("FP16"), fp32_contents=[1.0, 2.0]),
        INVALID,
        "raw_input_contents",
    ),
    "int8 out of range": (
        lambda: with_contents(request("INT8"), int_contents=[1, 300]),
        INVALID,
        "'INPUT0'",
    ),
    "no data": (request, INVALID, "no data"),
    "negative dim": (lambda: with_raw(request(shape=(-1, 2)), b""), INVALID, "negative"),
    "too many elements": (
        lambda: with_raw(request(shape=(MAX_TENSOR_ELEMENTS + 1,)), b""),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        str(MAX_TENSOR_ELEMENTS),
    ),
    "bytes truncated": (
        lambda: with_raw(request("BYTES", (2,)), struct.pack("<I", 3) + b"abc"),
        INVALID,
        "'INPUT0'",
    ),
    "bytes overlong element": (
        lambda: with_raw(request("BYTES", (1,)), struct.pack("<I", 99) + b"abc"),
        INVALID,
        "99",
    ),
    "bytes trailing data": (
        lambda: with_raw(request("BYTES", (1,)), struct.pack("<I", 1) + b"ab"),
        INVALID,
        "after",
    ),
    "bool not 0/1": (lambda: with_raw(request("BOOL"), b"\x01\x02"), INVALID, "BOOL"),
    "shared memory": (_shm, INVALID, "shared memory"),
    "negative timeout": (lambda: _timeout(-5), INVALID, "timeout"),
    "parameter without value": (_empty_parameter, INVALID, "'flag'"),
    "no model name": (lambda: with_raw(request(model=""), b"\0" * 8), INVALID, "model_name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_infer_request(stub: Stub, case: str) -> None:
    build, status, fragment = CASES[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(build())
    assert info.value.code() == status
    assert fragment in (info.value.details() or "")
    assert_still_serving(stub)


def test_undecodable_bytes_are_invalid_argument(server: RunningServer) -> None:
    # Field 1 (model_name, a proto3 string) holding bytes that are not UTF-8.
    garbage = b"\x0a\x02\xff\xfe"
    with grpc.insecure_channel(server.url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(garbage)
    assert info.value.code() == INVALID
    assert "ModelInferRequest" in (info.value.details() or "")


def test_typed_contents_are_accepted(stub: Stub) -> None:
    msg = with_contents(request("INT16", (2, 2)), int_contents=[-32768, 0, 1, 32767])
    response = stub.ModelInfer(msg)
    out = np.frombuffer(response.raw_output_contents[0], dtype="<i2").reshape(2, 2)
    np.testing.assert_array_equal(out, [[-32768, 0], [1, 32767]])
    assert response.outputs[0].datatype == "INT16"


def test_empty_tensor_needs_no_data(stub: Stub) -> None:
    response = stub.ModelInfer(request("FP32", (0, 3), model="identity_fp32"))
    assert list(response.outputs[0].shape) == [0, 3]
    assert response.raw_output_contents[0] == b""


def test_unload_with_unknown_parameter(stub: Stub) -> None:
    msg = pb.RepositoryModelUnloadRequest(model_name="simple")
    msg.parameters["cascade"].bool_param = True
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelUnload(msg)
    assert info.value.code() == INVALID
    assert "cascade" in (info.value.details() or "")


def test_model_name_is_required(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelMetadata(pb.ModelMetadataRequest())
    assert info.value.code() == INVALID


def assert_still_serving(stub: Stub) -> None:
    ok = with_raw(request(), np.array([[5, -6]], dtype="<i4").tobytes())
    response = stub.ModelInfer(ok)
    assert np.frombuffer(response.raw_output_contents[0], "<i4").tolist() == [5, -6]
