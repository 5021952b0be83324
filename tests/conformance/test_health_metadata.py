"""Health and metadata through the official tritonclient HTTP and gRPC clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.conformance

SIMPLE_INPUTS = {("INPUT0", "INT32", (-1, 16)), ("INPUT1", "INT32", (-1, 16))}
SIMPLE_OUTPUTS = {("OUTPUT0", "INT32", (-1, 16)), ("OUTPUT1", "INT32", (-1, 16))}


def test_http_live_and_ready(http: httpclient.InferenceServerClient) -> None:
    assert http.is_server_live()
    assert http.is_server_ready()


def test_grpc_live_and_ready(grpc_client: grpcclient.InferenceServerClient) -> None:
    assert grpc_client.is_server_live()
    assert grpc_client.is_server_ready()


def test_http_server_metadata(http: httpclient.InferenceServerClient) -> None:
    meta = http.get_server_metadata()
    assert meta["name"] == "modelyard"
    assert meta["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])


def test_grpc_server_metadata(grpc_client: grpcclient.InferenceServerClient) -> None:
    meta = grpc_client.get_server_metadata()
    assert meta.name == "modelyard"
    assert meta.version
    assert {"binary_tensor_data", "model_repository"} <= set(meta.extensions)
    as_json = grpc_client.get_server_metadata(as_json=True)
    assert as_json["name"] == "modelyard"


def test_http_model_metadata(http: httpclient.InferenceServerClient) -> None:
    meta = http.get_model_metadata("simple")
    assert meta["name"] == "simple"
    assert "1" in meta["versions"]
    assert meta["platform"]
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in meta["inputs"]} == SIMPLE_INPUTS
    assert {
        (t["name"], t["datatype"], tuple(t["shape"])) for t in meta["outputs"]
    } == SIMPLE_OUTPUTS


def test_http_model_metadata_of_a_version(http: httpclient.InferenceServerClient) -> None:
    meta = http.get_model_metadata("simple", model_version="1")
    assert meta["name"] == "simple"
    assert {t["name"] for t in meta["inputs"]} == {"INPUT0", "INPUT1"}


def test_grpc_model_metadata(grpc_client: grpcclient.InferenceServerClient) -> None:
    meta = grpc_client.get_model_metadata("simple")
    assert meta.name == "simple"
    assert "1" in meta.versions
    assert meta.platform
    assert {(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs} == SIMPLE_INPUTS
    assert {(t.name, t.datatype, tuple(t.shape)) for t in meta.outputs} == SIMPLE_OUTPUTS
    as_json = grpc_client.get_model_metadata("simple", model_version="1", as_json=True)
    assert as_json["name"] == "simple"


def test_metadata_of_every_identity_model(http: httpclient.InferenceServerClient) -> None:
    for dt in ("BOOL", "UINT64", "INT8", "FP16", "FP64", "BYTES"):
        meta = http.get_model_metadata(f"identity_{dt.lower()}")
        assert [(t["datatype"], t["shape"]) for t in meta["inputs"]] == [(dt, [-1, -1])]


def test_http_model_ready(http: httpclient.InferenceServerClient) -> None:
    assert http.is_model_ready("simple")
    assert http.is_model_ready("simple", model_version="1")
    assert not http.is_model_ready("no_such_model")


def test_grpc_model_ready(grpc_client: grpcclient.InferenceServerClient) -> None:
    assert grpc_client.is_model_ready("simple")
    try:
        ready = grpc_client.is_model_ready("no_such_model")
    except InferenceServerException as exc:  # Triton answers NOT_FOUND; ready=false is fine too
        assert exc.status() == "StatusCode.NOT_FOUND"
    else:
        assert not ready


def test_http_metadata_of_unknown_model_is_404(http: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        http.get_model_metadata("no_such_model")
    assert info.value.status() == "404"
    assert "no_such_model" in str(info.value.message())


def test_grpc_metadata_of_unknown_model_is_not_found(
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as info:
        grpc_client.get_model_metadata("no_such_model")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "no_such_model" in str(info.value.message())


def test_v1_model_status_of_an_unknown_model_is_404(server: ServerProcess) -> None:
    with urllib.request.urlopen(f"http://{server.http_url}/v1/models/simple", timeout=10) as resp:
        assert json.loads(resp.read()) == {"name": "simple", "ready": True}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{server.http_url}/v1/models/nope", timeout=10)
    assert info.value.code == 404
    assert "nope" in json.loads(info.value.read())["error"]
