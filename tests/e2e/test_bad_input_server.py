"""Bad input against a real server with small limits: one test per case, each asserting the status,
a message that names the offending field, and that the process is alive and serves the next
valid request over HTTP and gRPC. Raw HTTP (httpx) and raw protobuf/gRPC, so that the server, not
a client library, sees the bad bytes."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from tritonclient.grpc import service_pb2

from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import identity_model, simple_model

pytestmark = pytest.mark.e2e

MAX_BYTES = 64 * 1024
MAX_ELEMENTS = 1000
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("bad_input")
    registry = Registry(root / "registry")
    try:
        registry.push(simple_model(root / "simple.onnx"), name="simple")
        for dt in (Datatype.FP32, Datatype.UINT8, Datatype.INT32, Datatype.BYTES):
            name = f"identity_{dt.value.lower()}"
            registry.push(identity_model(dt, root / f"{name}.onnx"), name=name)
    finally:
        registry.close()
    proc = start_server(
        root / "registry",
        "--preload",
        "simple,identity_fp32,identity_bytes",
        env={
            "MODELYARD_MAX_REQUEST_BYTES": str(MAX_BYTES),
            "MODELYARD_MAX_TENSOR_ELEMENTS": str(MAX_ELEMENTS),
        },
    )
    yield proc
    assert proc.terminate() == 0, proc.log()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as ch:
        yield ch


def raw_infer(channel: grpc.Channel, payload: bytes) -> bytes:
    call = channel.unary_unary(INFER, request_serializer=None, response_deserializer=None)
    result: bytes = call(payload, timeout=30)
    return result


def assert_still_serving(server: ServerProcess, http: httpx.Client, channel: grpc.Channel) -> None:
    assert server.proc.poll() is None, server.log()
    body = {"inputs": [tensor("INPUT0", "FP32", [1, 2], [1.5, -2.0])]}
    reply = http.post("/v2/models/identity_fp32/infer", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [1.5, -2.0]
    request = grpc_request(
        "identity_fp32", "FP32", [1, 2], np.array([3.0, 4.0], np.float32).tobytes()
    )
    response = service_pb2.ModelInferResponse.FromString(raw_infer(channel, request))
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [3.0, 4.0]


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def binary_body(
    inputs: list[tuple[str, str, list[int], bytes, int | None]],
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request; each input is (name, datatype, shape, blob, declared size)."""
    header = {
        "inputs": [
            {
                "name": name,
                "datatype": dt,
                "shape": shape,
                "parameters": {"binary_data_size": len(blob) if size is None else size},
            }
            for name, dt, shape, blob, size in inputs
        ]
    }
    head = orjson.dumps(header)
    body = head + b"".join(blob for *_, blob, _ in inputs)
    return body, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def bytes_blob(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in items)


def grpc_request(
    model: str,
    datatype: str,
    shape: list[int],
    raw: bytes,
    *,
    version: str = "",
    name: str = "INPUT0",
) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return bytes(request.SerializeToString())


# ---- HTTP cases -------------------------------------------------------------------------------
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpCase:
    path: str
    request: tuple[bytes, dict[str, str]]  # body, headers
    statuses: tuple[int, ...]
    names: tuple[str, ...]  # substrings the error message must contain


def as_json(*tensors: dict[str, Any], **extra: Any) -> tuple[bytes, dict[str, str]]:
    return orjson.dumps({"inputs": list(tensors), **extra}), JSON_HEADERS


def raw_json(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, JSON_HEADERS


def as_binary(
    datatype: str, shape: list[int], blob: bytes, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    return binary_body([("INPUT0", datatype, shape, blob, size)])


FP32 = "/v2/models/identity_fp32/infer"
U8 = "/v2/models/identity_uint8/infer"
STR = "/v2/models/identity_bytes/infer"
TOO_MANY = (400, 413, 422)


def _header_beyond_body() -> tuple[bytes, dict[str, str]]:
    body, headers = as_binary("FP32", [1, 2], b"\0" * 8)
    return body, {**headers, "Inference-Header-Content-Length": str(len(body) + 10)}


def _truncated_gzip() -> tuple[bytes, dict[str, str]]:
    body = gzip.compress(as_json(tensor("INPUT0", "FP32", [1, 1], [1.0]))[0])[:-12]
    return body, {**JSON_HEADERS, "Content-Encoding": "gzip"}


HTTP_CASES: dict[str, HttpCase] = {
    "unknown_model": HttpCase(
        "/v2/models/no_such_model/infer",
        as_json(tensor("INPUT0", "FP32", [1], [1.0])),
        (404,),
        ("no_such_model",),
    ),
    "unknown_version": HttpCase(
        "/v2/models/identity_fp32/versions/99/infer",
        as_json(tensor("INPUT0", "FP32", [1, 1], [1.0])),
        (404,),
        ("identity_fp32",),
    ),
    "malformed_json": HttpCase(FP32, raw_json(b'{"inputs": [{"name": "INPUT0",'), (400,), ()),
    "json_not_an_object": HttpCase(FP32, raw_json(b"[1, 2, 3]"), (400,), ()),
    "missing_inputs": HttpCase(FP32, raw_json(b'{"id": "x"}'), (400,), ("inputs",)),
    "missing_datatype": HttpCase(
        FP32, as_json({"name": "INPUT0", "shape": [1], "data": [1]}), (400,), ("datatype",)
    ),
    "unknown_datatype": HttpCase(
        FP32, as_json(tensor("INPUT0", "FP8", [1, 1], [1.0])), (400,), ("FP8",)
    ),
    "negative_dim": HttpCase(
        FP32, as_json(tensor("INPUT0", "FP32", [1, -2], [1.0])), (400,), ("INPUT0",)
    ),
    "json_count_mismatch": HttpCase(
        FP32, as_json(tensor("INPUT0", "FP32", [1, 4], [1.0, 2.0, 3.0])), (400,), ("INPUT0",)
    ),
    "value_out_of_range": HttpCase(
        U8, as_json(tensor("INPUT0", "UINT8", [1, 2], [1, 300])), (400,), ("INPUT0",)
    ),
    "float_for_integer": HttpCase(
        "/v2/models/identity_int32/infer",
        as_json(tensor("INPUT0", "INT32", [1, 2], [1, 1.5])),
        (400,),
        ("INPUT0",),
    ),
    "shape_not_in_signature": HttpCase(
        "/v2/models/simple/infer",
        as_json(
            tensor("INPUT0", "INT32", [1, 8], [0] * 8), tensor("INPUT1", "INT32", [1, 8], [0] * 8)
        ),
        (400,),
        ("INPUT0",),
    ),
    "too_many_elements_json": HttpCase(
        U8,
        as_json(tensor("INPUT0", "UINT8", [1, 2 * MAX_ELEMENTS], [0] * 2 * MAX_ELEMENTS)),
        TOO_MANY,
        ("INPUT0",),
    ),
    "too_many_elements_binary": HttpCase(
        U8,
        as_binary("UINT8", [1, 2 * MAX_ELEMENTS], b"\0" * 2 * MAX_ELEMENTS),
        TOO_MANY,
        ("INPUT0",),
    ),
    "huge_declared_shape": HttpCase(
        U8, as_json(tensor("INPUT0", "UINT8", [1, 10**12], [0])), TOO_MANY, ("INPUT0",)
    ),
    "binary_size_not_shape_times_itemsize": HttpCase(
        FP32, as_binary("FP32", [1, 4], b"\0" * 12), (400,), ("INPUT0",)
    ),
    "binary_size_beyond_body": HttpCase(
        FP32, as_binary("FP32", [1, 4], b"\0" * 8, size=16), (400,), ("INPUT0",)
    ),
    "header_length_beyond_body": HttpCase(
        FP32, _header_beyond_body(), (400,), ("Inference-Header-Content-Length",)
    ),
    "non_utf8_bytes": HttpCase(
        STR, as_binary("BYTES", [1, 2], bytes_blob(b"ok", b"\xff\xfe bad")), (400,), ("INPUT0",)
    ),
    "bytes_length_prefix_beyond_data": HttpCase(
        STR, as_binary("BYTES", [1, 2], b"\x05\x00\x00\x00ab"), (400,), ("INPUT0",)
    ),
    "nan": HttpCase(
        FP32,
        as_binary("FP32", [1, 2], np.array([1, np.nan], np.float32).tobytes()),
        (400,),
        ("INPUT0",),
    ),
    "inf": HttpCase(
        FP32,
        as_binary("FP32", [1, 2], np.array([np.inf, 1], np.float32).tobytes()),
        (400,),
        ("INPUT0",),
    ),
    "truncated_gzip": HttpCase(FP32, _truncated_gzip(), (400,), ("gzip",)),
}


@pytest.mark.parametrize("case_name", list(HTTP_CASES))
def test_http_bad_input(
    server: ServerProcess, http: httpx.Client, channel: grpc.Channel, case_name: str
) -> None:
    case = HTTP_CASES[case_name]
    body, headers = case.request
    reply = http.post(case.path, content=body, headers=headers)
    assert reply.status_code in case.statuses, reply.text
    error = reply.json()["error"]
    assert isinstance(error, str) and error
    for name in case.names:
        assert name in error, error
    assert_still_serving(server, http, channel)


def _chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
    yield b'{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [0.5'
    for _ in range(2 * MAX_BYTES // 1024):
        yield b" " * 1024
    yield b"]}]}"


TOO_LARGE: dict[str, tuple[Any, dict[str, str]]] = {
    "content_length": (b" " * (MAX_BYTES + 1), JSON_HEADERS),
    "chunked": (_chunks, JSON_HEADERS),
    # A few hundred bytes on the wire that inflate far beyond the limit.
    "gzip_bomb": (
        gzip.compress(b" " * (16 * MAX_BYTES)),
        {**JSON_HEADERS, "Content-Encoding": "gzip"},
    ),
}


@pytest.mark.parametrize("kind", list(TOO_LARGE))
def test_http_body_larger_than_max_is_413(
    server: ServerProcess, http: httpx.Client, channel: grpc.Channel, kind: str
) -> None:
    content, headers = TOO_LARGE[kind]
    reply = http.post(FP32, content=content() if callable(content) else content, headers=headers)
    assert reply.status_code == 413, reply.text
    assert "body" in reply.json()["error"]
    assert_still_serving(server, http, channel)


# ---- gRPC cases -------------------------------------------------------------------------------
INVALID = (grpc.StatusCode.INVALID_ARGUMENT,)


def _grpc_cases() -> dict[str, tuple[bytes, tuple[grpc.StatusCode, ...], tuple[str, ...]]]:
    f32 = np.array([1.0, 2.0], np.float32).tobytes()
    both = service_pb2.ModelInferRequest(model_name="identity_fp32")
    both.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend(
        [1, 2]
    )
    both.raw_input_contents.append(f32)
    typed = service_pb2.ModelInferRequest(model_name="identity_fp32")
    typed.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend(
        [1, 2]
    )
    short = service_pb2.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        short.inputs.add(name=name, datatype="INT32", shape=[1, 2])
        short.raw_input_contents.append(np.zeros(2, np.int32).tobytes())
    return {
        "garbage_protobuf": (
            b"\xff\xff\xff\xff garbage \x00\x01",
            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL),
            (),
        ),
        "unknown_model": (
            grpc_request("no_such_model", "FP32", [1, 2], f32),
            (grpc.StatusCode.NOT_FOUND,),
            ("no_such_model",),
        ),
        "unknown_version": (
            grpc_request("identity_fp32", "FP32", [1, 2], f32, version="99"),
            (grpc.StatusCode.NOT_FOUND,),
            ("identity_fp32",),
        ),
        "raw_size_mismatch": (
            grpc_request("identity_fp32", "FP32", [1, 4], f32),
            INVALID,
            ("INPUT0",),
        ),
        "typed_count_mismatch": (bytes(typed.SerializeToString()), INVALID, ("INPUT0",)),
        "raw_and_typed_contents": (bytes(both.SerializeToString()), INVALID, ("INPUT0",)),
        "unknown_datatype": (grpc_request("identity_fp32", "FP8", [1, 2], f32), INVALID, ("FP8",)),
        "shape_not_in_signature": (bytes(short.SerializeToString()), INVALID, ("INPUT0",)),
        "too_many_elements": (
            grpc_request(
                "identity_uint8", "UINT8", [1, 2 * MAX_ELEMENTS], b"\0" * 2 * MAX_ELEMENTS
            ),
            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED),
            ("INPUT0",),
        ),
        "huge_declared_shape": (
            grpc_request("identity_uint8", "UINT8", [1, 10**12], b"\0"),
            (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED),
            ("INPUT0",),
        ),
        "non_utf8_bytes": (
            grpc_request("identity_bytes", "BYTES", [1, 1], bytes_blob(b"\xc3\x28")),
            INVALID,
            ("INPUT0",),
        ),
        "nan": (
            grpc_request(
                "identity_fp32", "FP32", [1, 2], np.array([np.nan, 1], np.float32).tobytes()
            ),
            INVALID,
            ("INPUT0",),
        ),
        "message_larger_than_max": (
            grpc_request("identity_uint8", "UINT8", [1, 2 * MAX_BYTES], b"\0" * 2 * MAX_BYTES),
            (grpc.StatusCode.RESOURCE_EXHAUSTED,),
            (),
        ),
    }


GRPC_CASES = _grpc_cases()


@pytest.mark.parametrize("case_name", list(GRPC_CASES))
def test_grpc_bad_input(
    server: ServerProcess, http: httpx.Client, channel: grpc.Channel, case_name: str
) -> None:
    payload, codes, names = GRPC_CASES[case_name]
    with pytest.raises(grpc.RpcError) as info:
        raw_infer(channel, payload)
    error: Any = info.value
    assert error.code() in codes, (error.code(), error.details())
    for name in names:
        assert name in (error.details() or ""), error.details()
    assert_still_serving(server, http, channel)
