"""The model repository extension (index, load, unload) through the official clients.

Each test leaves ``linear`` loaded again, whatever happens, because the server is shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelyard.types import Datatype

pytestmark = pytest.mark.conformance

FEATURES = np.arange(40, dtype=np.float32).reshape(2, 20)


def _http_linear(http: httpclient.InferenceServerClient) -> Any:
    inp = httpclient.InferInput("input", [2, 20], "FP32").set_data_from_numpy(FEATURES)
    return http.infer("linear", [inp]).as_numpy("output")


def _grpc_linear(grpc_client: grpcclient.InferenceServerClient) -> Any:
    inp = grpcclient.InferInput("input", [2, 20], "FP32").set_data_from_numpy(FEATURES)
    return grpc_client.infer("linear", [inp]).as_numpy("output")


EXPECTED = FEATURES.sum(axis=1, keepdims=True)
ALL_MODELS = {"simple", "linear"} | {f"identity_{dt.value.lower()}" for dt in Datatype}


def test_http_index_lists_every_model(http: httpclient.InferenceServerClient) -> None:
    index = http.get_model_repository_index()
    by_name = {row["name"]: row for row in index}
    assert set(by_name) >= ALL_MODELS
    assert by_name["simple"]["state"] == "READY"  # preloaded at start
    assert by_name["simple"]["version"] == "1"
    for row in index:
        assert row["state"] in {"READY", "UNAVAILABLE", "LOADING", "UNLOADING"}


def test_grpc_index_lists_every_model(grpc_client: grpcclient.InferenceServerClient) -> None:
    index = grpc_client.get_model_repository_index()
    by_name = {m.name: m for m in index.models}
    assert set(by_name) >= ALL_MODELS
    assert by_name["simple"].state == "READY"
    assert by_name["simple"].version == "1"
    as_json = grpc_client.get_model_repository_index(as_json=True)
    assert any(m["name"] == "simple" for m in as_json["models"])


def test_http_load_unload(http: httpclient.InferenceServerClient) -> None:
    try:
        http.load_model("linear")
        assert http.is_model_ready("linear")
        states = {row["name"]: row["state"] for row in http.get_model_repository_index()}
        assert states["linear"] == "READY"
        np.testing.assert_array_equal(_http_linear(http), EXPECTED)

        http.unload_model("linear")
        assert not http.is_model_ready("linear")
        states = {row["name"]: row["state"] for row in http.get_model_repository_index()}
        assert states["linear"] != "READY"
        with pytest.raises(InferenceServerException) as info:
            _http_linear(http)
        assert info.value.status() == "503"
        assert "linear" in str(info.value.message())
    finally:
        http.load_model("linear")
    assert http.is_model_ready("linear")
    np.testing.assert_array_equal(_http_linear(http), EXPECTED)


def test_grpc_load_unload(grpc_client: grpcclient.InferenceServerClient) -> None:
    try:
        grpc_client.load_model("linear")
        assert grpc_client.is_model_ready("linear")
        np.testing.assert_array_equal(_grpc_linear(grpc_client), EXPECTED)

        grpc_client.unload_model("linear")
        assert not grpc_client.is_model_ready("linear")
        index = grpc_client.get_model_repository_index()
        assert {m.name: m.state for m in index.models}["linear"] != "READY"
        with pytest.raises(InferenceServerException) as info:
            _grpc_linear(grpc_client)
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        assert "linear" in str(info.value.message())
    finally:
        grpc_client.load_model("linear")
    assert grpc_client.is_model_ready("linear")
    np.testing.assert_array_equal(_grpc_linear(grpc_client), EXPECTED)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_unknown_model_is_not_found(
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
    protocol: str,
) -> None:
    client: Any = http if protocol == "http" else grpc_client
    with pytest.raises(InferenceServerException) as info:
        client.load_model("no_such_model")
    assert info.value.status() == ("404" if protocol == "http" else "StatusCode.NOT_FOUND")
    assert "no_such_model" in str(info.value.message())
    assert client.is_server_ready()
