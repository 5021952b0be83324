"""The gRPC frontend driven by the official synchronous ``tritonclient.grpc`` client."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import InferenceServerClient as Client
from tritonclient.utils import InferenceServerException

from modelyard.types import Datatype
from tests.unit.frontends_grpc.conftest import RunningServer
from tests.unit.frontends_grpc.fakes import identity_name

pytestmark = pytest.mark.conformance


def simple_inputs(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> list[triton.InferInput]:
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = triton.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def sample_pair() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    return a, np.full((2, 16), 3, dtype=np.int32)


def assert_still_serving(client: Client) -> None:
    a, b = sample_pair()
    result = client.infer("simple", simple_inputs(a, b))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def rpc_failure(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


# ---- health and metadata ----------------------------------------------------------------------
def test_health(client: Client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "2")
    assert not client.is_model_ready(identity_name(Datatype.INT8))


def test_server_metadata(client: Client) -> None:
    assert client.get_server_metadata(as_json=True) == {
        "name": "modelyard",
        "version": "0.1.0",
        "extensions": ["model_repository"],
    }
    proto = client.get_server_metadata()
    assert (proto.name, list(proto.extensions)) == ("modelyard", ["model_repository"])


def test_model_metadata(client: Client) -> None:
    meta = client.get_model_metadata("simple", as_json=True)
    assert meta["name"] == "simple"
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    # MessageToJson writes int64 as strings.
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]},
        {"name": "INPUT1", "datatype": "INT32", "shape": ["-1", "16"]},
    ]
    proto = client.get_model_metadata("simple", "1")
    assert [(o.name, o.datatype, list(o.shape)) for o in proto.outputs] == [
        ("OUTPUT0", "INT32", [-1, 16]),
        ("OUTPUT1", "INT32", [-1, 16]),
    ]


# ---- inference --------------------------------------------------------------------------------
def test_simple_infer(client: Client, server: RunningServer) -> None:
    a, b = sample_pair()
    result = client.infer("simple", simple_inputs(a, b), model_version="2", request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("simple", "2", "req-7")
    name, version, request, ctx = server.dataplane.calls[-1]
    assert (name, version, request.id, ctx.request_id) == ("simple", "2", "req-7", "req-7")


def test_requested_outputs(client: Client) -> None:
    a, b = sample_pair()
    result = client.infer(
        "simple", simple_inputs(a, b), outputs=[triton.InferRequestedOutput("OUTPUT1")]
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None


def _extremes(datatype: Datatype) -> np.ndarray[Any, Any]:
    dtype = datatype.numpy_dtype
    if datatype is Datatype.BOOL:
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [info.max, info.max - 1, 7]], dtype=dtype)
    info_f = np.finfo(dtype)
    values = [[info_f.min, -0.0, info_f.tiny], [info_f.max, np.inf, np.nan]]
    return np.array(values, dtype=dtype)


@pytest.mark.parametrize(
    "datatype", [d for d in Datatype if d is not Datatype.BYTES], ids=lambda d: d.value
)
def test_every_numeric_datatype_round_trips_exactly(client: Client, datatype: Datatype) -> None:
    data = _extremes(datatype)
    tensor = triton.InferInput("INPUT0", list(data.shape), datatype.value)
    tensor.set_data_from_numpy(data)
    out = client.infer(identity_name(datatype), [tensor]).as_numpy("OUTPUT0")
    assert out.dtype == data.dtype
    assert out.shape == data.shape
    assert out.tobytes() == data.tobytes()


def test_bytes_round_trip(client: Client) -> None:
    data = np.array(
        [[b"hello", b"", b"\xff\xfe not utf-8"], [b"\x00", b"a" * 1000, b"z"]], dtype=object
    )
    tensor = triton.InferInput("INPUT0", [2, 3], "BYTES")
    tensor.set_data_from_numpy(data)
    out = client.infer(identity_name(Datatype.BYTES), [tensor]).as_numpy("OUTPUT0")
    assert out.shape == (2, 3)
    assert out.tolist() == data.tolist()


def test_strings_travel_as_utf8_bytes(client: Client) -> None:
    data = np.array([["grüße", "日本"]], dtype=object)
    tensor = triton.InferInput("INPUT0", [1, 2], "BYTES")
    tensor.set_data_from_numpy(data)
    out = client.infer(identity_name(Datatype.BYTES), [tensor]).as_numpy("OUTPUT0")
    assert out.tolist() == [["grüße".encode(), "日本".encode()]]


def test_context_carries_routing_key_and_timeout(client: Client, server: RunningServer) -> None:
    a, b = sample_pair()
    client.infer(
        "simple",
        simple_inputs(a, b),
        headers={"x-modelyard-key": "user-42"},
        timeout=250_000,
        parameters={"custom": "yes"},
    )
    _, _, request, ctx = server.dataplane.calls[-1]
    assert ctx.routing_key == "user-42"
    assert ctx.deadline == pytest.approx(server.dataplane.clock.monotonic() + 0.25)
    assert request.parameters == {"custom": "yes"}


def test_grpc_deadline_becomes_context_deadline(client: Client, server: RunningServer) -> None:
    a, b = sample_pair()
    client.infer("simple", simple_inputs(a, b), client_timeout=30.0)
    _, _, _, ctx = server.dataplane.calls[-1]
    now = server.dataplane.clock.monotonic()
    assert ctx.deadline is not None
    # gRPC rounds the timeout up when it encodes it on the wire; allow for that.
    assert now + 29.0 < ctx.deadline <= now + 31.0


def test_no_deadline_without_timeouts(client: Client, server: RunningServer) -> None:
    assert_still_serving(client)
    assert server.dataplane.calls[-1][3].deadline is None


def test_deadline_exceeded(client: Client) -> None:
    tensor = triton.InferInput("INPUT0", [1], "INT32")
    tensor.set_data_from_numpy(np.zeros(1, dtype=np.int32))
    error = rpc_failure(lambda: client.infer("slow", [tensor], timeout=100_000))
    assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert "deadline" in error.message()
    client.infer("slow", [tensor])  # no timeout: the same model answers
    assert_still_serving(client)


def test_stream_infer(client: Client) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        a, b = sample_pair()
        client.async_stream_infer("simple", simple_inputs(a, b), request_id="s1")
        client.async_stream_infer("no_such_model", simple_inputs(a, b), request_id="s2")
        client.async_stream_infer("simple", simple_inputs(b, a), request_id="s3")
        received = [results.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    first, second, third = received
    np.testing.assert_array_equal(first[0].as_numpy("OUTPUT0"), a + b)
    assert second[0] is None
    assert "no_such_model" in second[1].message()
    np.testing.assert_array_equal(third[0].as_numpy("OUTPUT1"), b - a)
    assert third[0].get_response().id == "s3"


# ---- repository -------------------------------------------------------------------------------
def test_repository_index_load_unload(client: Client) -> None:
    name = identity_name(Datatype.UINT16)
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": name, "version": "1", "state": "UNAVAILABLE"} in index
    client.load_model(name)
    try:
        assert client.is_model_ready(name)
        ready = client.get_model_repository_index().models
        assert name in {m.name for m in ready if m.state == "READY"}
    finally:
        client.unload_model(name)
    assert not client.is_model_ready(name)


def test_load_refuses_config_override(client: Client) -> None:
    error = rpc_failure(lambda: client.load_model("simple", config='{"max_batch_size": 8}'))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "config" in error.message()


def test_load_unknown_model(client: Client) -> None:
    error = rpc_failure(lambda: client.load_model("nope"))
    assert error.status() == "StatusCode.NOT_FOUND"
    assert "nope" in error.message()


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "version", "status", "fragment"),
    [
        ("no_such_model", "", "StatusCode.NOT_FOUND", "no_such_model"),
        ("simple", "9", "StatusCode.NOT_FOUND", "'9'"),
        ("unavailable", "", "StatusCode.UNAVAILABLE", "loading"),
    ],
)
def test_dataplane_errors_map_to_status(
    client: Client, model: str, version: str, status: str, fragment: str
) -> None:
    a, b = sample_pair()
    error = rpc_failure(lambda: client.infer(model, simple_inputs(a, b), model_version=version))
    assert error.status() == status
    assert fragment in error.message()
    assert_still_serving(client)


def test_unexpected_exception_is_internal_and_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = sample_pair()
    with caplog.at_level("ERROR", logger="modelyard.frontends.grpc"):
        error = rpc_failure(lambda: client.infer("broken", simple_inputs(a, b)))
    assert error.status() == "StatusCode.INTERNAL"
    assert "secret" not in error.message()
    assert any("secret internal detail" in r.getMessage() or r.exc_info for r in caplog.records)
    assert_still_serving(client)


def test_signature_mismatch_is_invalid_argument(client: Client) -> None:
    a = np.zeros((1, 8), dtype=np.int32)
    error = rpc_failure(lambda: client.infer("simple", simple_inputs(a, a)))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "INPUT0" in error.message()
    assert_still_serving(client)


def test_unknown_output_is_invalid_argument(client: Client) -> None:
    a, b = sample_pair()
    wanted = [triton.InferRequestedOutput("OUTPUT9")]
    error = rpc_failure(lambda: client.infer("simple", simple_inputs(a, b), outputs=wanted))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "OUTPUT9" in error.message()


def test_unknown_model_metadata_and_readiness(client: Client) -> None:
    assert rpc_failure(lambda: client.get_model_metadata("nope")).status() == (
        "StatusCode.NOT_FOUND"
    )
    assert rpc_failure(lambda: client.is_model_ready("nope")).status() == "StatusCode.NOT_FOUND"


def test_shared_memory_rpcs_are_unimplemented(client: Client) -> None:
    error = rpc_failure(client.get_system_shared_memory_status)
    assert error.status() == "StatusCode.UNIMPLEMENTED"


def test_request_over_the_size_limit(client: Client) -> None:
    data = np.zeros((1, 128 * 1024), dtype=np.float32)  # 512 KiB > the 256 KiB limit
    tensor = triton.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    error = rpc_failure(lambda: client.infer(identity_name(Datatype.FP32), [tensor]))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert_still_serving(client)
