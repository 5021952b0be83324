"""Error cases through the official tritonclient clients: the status each protocol reports, a
message naming the offending field, and the next valid request served normally."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.conformance

GOOD0 = np.arange(16, dtype=np.int32).reshape(1, 16)
GOOD1 = np.ones((1, 16), dtype=np.int32)


@dataclass(frozen=True)
class Case:
    inputs: dict[str, np.ndarray]
    http_status: str
    grpc_status: str
    names: tuple[str, ...]  # substrings the message must contain
    model: str = "simple"
    version: str = ""
    outputs: tuple[str, ...] = field(default=())


BAD_REQUEST = ("400", "StatusCode.INVALID_ARGUMENT")
NOT_FOUND = ("404", "StatusCode.NOT_FOUND")

CASES: dict[str, Case] = {
    "unknown_model": Case(
        {"INPUT0": GOOD0, "INPUT1": GOOD1}, *NOT_FOUND, ("no_such_model",), model="no_such_model"
    ),
    "unknown_version": Case(
        {"INPUT0": GOOD0, "INPUT1": GOOD1}, *NOT_FOUND, ("simple",), version="99"
    ),
    "wrong_shape": Case(
        {"INPUT0": np.zeros((1, 8), np.int32), "INPUT1": np.zeros((1, 8), np.int32)},
        *BAD_REQUEST,
        ("INPUT0",),
    ),
    "wrong_rank": Case(
        {"INPUT0": np.zeros(16, np.int32), "INPUT1": GOOD1}, *BAD_REQUEST, ("INPUT0",)
    ),
    "wrong_datatype": Case(
        {"INPUT0": GOOD0.astype(np.float32), "INPUT1": GOOD1}, *BAD_REQUEST, ("INPUT0", "INT32")
    ),
    "wrong_datatype_bytes": Case(
        {"INPUT0": GOOD0, "INPUT1": np.full((1, 16), b"x", dtype=np.object_)},
        *BAD_REQUEST,
        ("INPUT1",),
    ),
    "missing_input": Case({"INPUT0": GOOD0}, *BAD_REQUEST, ("INPUT1",)),
    "unexpected_input": Case(
        {"INPUT0": GOOD0, "INPUT1": GOOD1, "INPUT9": GOOD1}, *BAD_REQUEST, ("INPUT9",)
    ),
    "unknown_output": Case(
        {"INPUT0": GOOD0, "INPUT1": GOOD1}, *BAD_REQUEST, ("OUTPUT9",), outputs=("OUTPUT9",)
    ),
}


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> Iterator[dict[str, Any]]:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc_client = grpcclient.InferenceServerClient(server.grpc_url)
    yield {"http": http, "grpc": grpc_client}
    http.close()
    grpc_client.close()


def send(clients: dict[str, Any], transport: str, case: Case) -> Any:
    if transport == "grpc":
        g_inputs = [
            grpcclient.InferInput(
                n, list(a.shape), np_to_triton_dtype(a.dtype)
            ).set_data_from_numpy(a)
            for n, a in case.inputs.items()
        ]
        g_outputs = [grpcclient.InferRequestedOutput(n) for n in case.outputs] or None
        return clients["grpc"].infer(
            case.model, g_inputs, model_version=case.version, outputs=g_outputs
        )
    binary = transport == "http-binary"
    h_inputs = [
        httpclient.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype)).set_data_from_numpy(
            a, binary_data=binary
        )
        for n, a in case.inputs.items()
    ]
    h_outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in case.outputs]
    return clients["http"].infer(
        case.model, h_inputs, model_version=case.version, outputs=h_outputs or None
    )


def assert_simple_serves(clients: dict[str, Any], transport: str) -> None:
    result = send(clients, transport, Case({"INPUT0": GOOD0, "INPUT1": GOOD1}, "", "", ()))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), GOOD0 + GOOD1)


@pytest.mark.parametrize("transport", ["http-json", "http-binary", "grpc"])
@pytest.mark.parametrize("case_name", list(CASES))
def test_error_case(clients: dict[str, Any], transport: str, case_name: str) -> None:
    case = CASES[case_name]
    with pytest.raises(InferenceServerException) as info:
        send(clients, transport, case)
    expected = case.grpc_status if transport == "grpc" else case.http_status
    assert info.value.status() == expected, info.value
    message = str(info.value.message())
    for name in case.names:
        assert name in message, message
    assert_simple_serves(clients, transport)
