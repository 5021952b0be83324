"""Inference through the official tritonclient HTTP and gRPC clients against the real server.

Triton's ``simple`` example unchanged, JSON and binary tensor data in every combination, and an
exact round trip of every V2 datatype (including integer limits and float extremes/subnormals)
through the ``identity_<dtype>`` models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

pytestmark = pytest.mark.conformance

# transport -> (HTTP input as binary, HTTP output as binary); "grpc" always sends raw bytes.
TRANSPORTS: dict[str, tuple[bool, bool]] = {
    "http-json": (False, False),
    "http-binary": (True, True),
    "http-binary-in-json-out": (True, False),
    "http-json-in-binary-out": (False, True),
    "grpc": (True, True),
}


@pytest.fixture(scope="module")
def clients(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> dict[str, Any]:
    return {"http": http, "grpc": grpc_client}


def identity(clients: dict[str, Any], transport: str, model: str, arr: np.ndarray) -> Any:
    """Send ``arr`` as INPUT0 of ``model`` and return OUTPUT0 as the client decodes it."""
    dt = np_to_triton_dtype(arr.dtype)
    if transport == "grpc":
        g_in = grpcclient.InferInput("INPUT0", list(arr.shape), dt).set_data_from_numpy(arr)
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        result = clients["grpc"].infer(model, [g_in], outputs=[out])
    else:
        binary_in, binary_out = TRANSPORTS[transport]
        h_in = httpclient.InferInput("INPUT0", list(arr.shape), dt)
        h_in.set_data_from_numpy(arr, binary_data=binary_in)
        h_out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)
        result = clients["http"].infer(model, [h_in], outputs=[h_out])
    return result.as_numpy("OUTPUT0")


# ---- Triton's simple example ----------------------------------------------------------------
def _simple_data(rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    input0 = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    input1 = np.full((rows, 16), -3, dtype=np.int32)
    return input0, input1


def test_simple_http_like_tritons_example(http: httpclient.InferenceServerClient) -> None:
    input0, input1 = _simple_data()
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "INT32"),
        httpclient.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(input0, binary_data=False)
    inputs[1].set_data_from_numpy(input1, binary_data=True)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    result = http.infer("simple", inputs, outputs=outputs, request_id="req-17")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)
    response = result.get_response()
    assert response["model_name"] == "simple"
    assert response["model_version"] == "1"
    assert response["id"] == "req-17"
    by_name = {o["name"]: o for o in response["outputs"]}
    assert by_name["OUTPUT0"]["parameters"]["binary_data_size"] == 16 * 4
    assert by_name["OUTPUT1"]["data"] == (input0 - input1).reshape(-1).tolist()
    assert by_name["OUTPUT1"]["datatype"] == "INT32"
    assert by_name["OUTPUT1"]["shape"] == [1, 16]


def test_simple_http_all_outputs_binary_by_default(http: httpclient.InferenceServerClient) -> None:
    input0, input1 = _simple_data(rows=3)
    inputs = [
        httpclient.InferInput("INPUT0", [3, 16], "INT32").set_data_from_numpy(input0),
        httpclient.InferInput("INPUT1", [3, 16], "INT32").set_data_from_numpy(input1),
    ]
    result = http.infer("simple", inputs)  # no outputs listed: binary_data_output=true
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)


def test_simple_grpc_like_tritons_example(grpc_client: grpcclient.InferenceServerClient) -> None:
    input0, input1 = _simple_data(rows=2)
    inputs = [
        grpcclient.InferInput("INPUT0", [2, 16], "INT32").set_data_from_numpy(input0),
        grpcclient.InferInput("INPUT1", [2, 16], "INT32").set_data_from_numpy(input1),
    ]
    outputs = [
        grpcclient.InferRequestedOutput("OUTPUT0"),
        grpcclient.InferRequestedOutput("OUTPUT1"),
    ]
    result = grpc_client.infer("simple", inputs, outputs=outputs, request_id="req-18")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)
    response = result.get_response()
    assert response.model_name == "simple"
    assert response.model_version == "1"
    assert response.id == "req-18"


def test_simple_grpc_explicit_version(grpc_client: grpcclient.InferenceServerClient) -> None:
    input0, input1 = _simple_data()
    inputs = [
        grpcclient.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(input0),
        grpcclient.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(input1),
    ]
    result = grpc_client.infer("simple", inputs, model_version="1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)


@pytest.mark.parametrize("transport", ["http-json", "http-binary", "grpc"])
def test_requested_output_subset(clients: dict[str, Any], transport: str) -> None:
    input0, input1 = _simple_data()
    if transport == "grpc":
        g_inputs = [
            grpcclient.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(input0),
            grpcclient.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(input1),
        ]
        g_out = [grpcclient.InferRequestedOutput("OUTPUT1")]
        result = clients["grpc"].infer("simple", g_inputs, outputs=g_out)
        names = [o.name for o in result.get_response().outputs]
    else:
        binary = TRANSPORTS[transport][0]
        h_inputs = [
            httpclient.InferInput("INPUT0", [1, 16], "INT32"),
            httpclient.InferInput("INPUT1", [1, 16], "INT32"),
        ]
        h_inputs[0].set_data_from_numpy(input0, binary_data=binary)
        h_inputs[1].set_data_from_numpy(input1, binary_data=binary)
        h_out = [httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary)]
        result = clients["http"].infer("simple", h_inputs, outputs=h_out)
        names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)


# ---- every datatype, exactly ----------------------------------------------------------------
def _int_values(dtype: np.dtype[Any]) -> list[int]:
    info = np.iinfo(dtype)
    middle = [-1, 0, 1] if info.min < 0 else [0, 1, 2]
    return [int(info.min), int(info.min) + 1, *middle, int(info.max) - 1, int(info.max)]


def _float_values(dtype: np.dtype[Any]) -> list[float]:
    fi = np.finfo(dtype)
    return [
        0.0,
        -0.0,
        1.0,
        -2.5,
        float(dtype.type(1 / 3)),
        float(dtype.type(np.pi)),
        float(fi.max),
        float(fi.min),
        float(fi.tiny),  # smallest normal
        -float(fi.tiny),
        float(fi.smallest_subnormal),
        -float(fi.smallest_subnormal),
        float(fi.smallest_subnormal) * 3,
        float(fi.eps),
    ]


def _values(datatype: str) -> np.ndarray:
    row: np.ndarray
    if datatype == "BOOL":
        row = np.array([True, False, False, True, True], dtype=np.bool_)
    elif datatype.startswith(("INT", "UINT")):
        dtype = np.dtype(datatype.lower())
        row = np.array(_int_values(dtype), dtype=dtype)
    else:
        dtype = np.dtype({"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype])
        row = np.array(_float_values(dtype), dtype=dtype)
    return np.stack([row, row[::-1]])  # two rows: the batch axis and row order survive too


NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("datatype", NUMERIC)
def test_numeric_round_trip_is_exact(
    clients: dict[str, Any], transport: str, datatype: str
) -> None:
    arr = _values(datatype)
    out = identity(clients, transport, f"identity_{datatype.lower()}", arr)
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    # Bytes, not values: -0.0 vs 0.0 and the last bit of every float must survive.
    assert out.tobytes() == arr.tobytes()


BYTES_VALUES = [
    b"hello",
    b"",
    "h\u00e9llo w\u00f6rld \u2713".encode(),
    "\u65e5\u672c\u8a9e".encode(),
    "emoji \U0001f680".encode(),
    b'with "quotes" and \\ backslash and \n newline',
]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_bytes_round_trip(clients: dict[str, Any], transport: str) -> None:
    arr = np.array(BYTES_VALUES + BYTES_VALUES[::-1], dtype=np.object_).reshape(2, -1)
    out = identity(clients, transport, "identity_bytes", arr)
    assert out.shape == arr.shape
    # JSON outputs decode to str, binary outputs to bytes: both must carry the same text.
    got = [v.encode() if isinstance(v, str) else bytes(v) for v in out.reshape(-1).tolist()]
    assert got == arr.reshape(-1).tolist()


@pytest.mark.parametrize("transport", ["http-json", "http-binary", "grpc"])
def test_bytes_all_empty_strings(clients: dict[str, Any], transport: str) -> None:
    arr = np.array([[b"", b""]], dtype=np.object_)
    out = identity(clients, transport, "identity_bytes", arr)
    assert [bytes(v) if not isinstance(v, str) else v.encode() for v in out.reshape(-1)] == [
        b"",
        b"",
    ]


# ---- non-finite floats are rejected by default ----------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("transport", ["http-binary", "grpc"])
def test_non_finite_is_rejected_naming_the_input(
    clients: dict[str, Any], transport: str, datatype: str, value: float
) -> None:
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype]
    arr = np.array([[1.0, value, 2.0]], dtype=dtype)
    model = f"identity_{datatype.lower()}"
    with pytest.raises(InferenceServerException) as info:
        identity(clients, transport, model, arr)
    expected = "StatusCode.INVALID_ARGUMENT" if transport == "grpc" else "400"
    assert info.value.status() == expected
    assert "INPUT0" in str(info.value.message())
    good = np.array([[1.0, 2.0]], dtype=dtype)
    assert identity(clients, transport, model, good).tobytes() == good.tobytes()


def test_non_finite_in_json_is_rejected(http: httpclient.InferenceServerClient) -> None:
    # JSON has no NaN: the client writes a bare NaN token, which is not valid JSON either way.
    arr = np.array([[np.nan]], dtype=np.float32)
    with pytest.raises(InferenceServerException) as info:
        identity({"http": http}, "http-json", "identity_fp32", arr)
    assert info.value.status() == "400"
