"""Model configuration and the statistics extension through the official tritonclient HTTP and
gRPC clients, against a real ``modelyard serve`` of this module's own (so counts are exact).

Models: ``simple`` (unbatched), ``linear_batched`` (batching hints 8 rows / 200 us),
``identity_bytes``, and ``stats``: Triton's ``simple`` under a name that collides with
``GET /v2/models/stats``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import identity_model, linear_fp32_model, simple_model

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("config_stats")
    registry = Registry(root / "registry")
    try:
        simple = simple_model(root / "m" / "simple.onnx")
        registry.push(simple, name="simple", alias="production")
        registry.push(simple, name="stats")
        linear = linear_fp32_model(root / "m" / "linear.onnx")
        registry.push(
            linear, name="linear_batched", batching={"max_batch_size": 8, "max_wait_us": 200}
        )
        registry.push(identity_model(Datatype.BYTES, root / "m" / "b.onnx"), name="identity_bytes")
    finally:
        registry.close()
    proc = start_server(root / "registry")
    yield proc
    assert proc.terminate() == 0, proc.log()


def simple_inputs(module: Any, columns: int = 16) -> list[Any]:
    """INPUT0 and INPUT1 of ``simple`` (one row); any ``columns`` but 16 is refused."""
    data = np.arange(columns, dtype=np.int32).reshape(1, columns)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [1, columns], "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def infer(client: Any, model: str, *, ok: bool) -> None:
    """One inference of ``model`` (Triton's ``simple`` signature) that succeeds, or that the
    server refuses (INPUT0 and INPUT1 of 8 columns instead of 16)."""
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    if ok:
        client.infer(model, simple_inputs(module))
    else:
        with pytest.raises(InferenceServerException):
            client.infer(model, simple_inputs(module, columns=8))


def test_server_metadata_lists_the_extensions(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    assert {"statistics", "model_configuration"} <= set(http.get_server_metadata()["extensions"])
    assert {"statistics", "model_configuration"} <= set(
        grpc_client.get_server_metadata().extensions
    )


# ---- model configuration ----------------------------------------------------------------------
def test_http_config_of_an_unbatched_model(http: httpclient.InferenceServerClient) -> None:
    config = http.get_model_config("simple")
    assert config["name"] == "simple"
    assert config["platform"] == http.get_model_metadata("simple")["platform"] == "onnx"
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_INT32", [-1, 16]),
        ("INPUT1", "TYPE_INT32", [-1, 16]),
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT0", "OUTPUT1"]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["served_version"] == {"string_value": "1"}
    assert http.get_model_config("simple", "1") == config


def test_http_config_of_a_batched_model(http: httpclient.InferenceServerClient) -> None:
    config = http.get_model_config("linear_batched")
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 200}
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [20]}]
    assert config["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": [1]}]


def test_grpc_config(grpc_client: grpcclient.InferenceServerClient) -> None:
    batched = grpc_client.get_model_config("linear_batched", as_json=True)["config"]
    assert batched["max_batch_size"] == 8
    assert batched["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": ["20"]}]
    assert batched["dynamic_batching"] == {"max_queue_delay_microseconds": "200"}
    plain = grpc_client.get_model_config("simple", as_json=True)["config"]
    assert "max_batch_size" not in plain  # 0, left out by protobuf's JSON
    assert [(t["name"], t["dims"]) for t in plain["input"]] == [
        ("INPUT0", ["-1", "16"]),
        ("INPUT1", ["-1", "16"]),
    ]
    message = grpc_client.get_model_config("identity_bytes").config
    assert message.input[0].data_type == model_config_pb2.TYPE_STRING
    assert message.platform == "onnx"


def test_config_of_an_unknown_model(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as info:
        http.get_model_config("no_such_model")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        grpc_client.get_model_config("no_such_model")
    assert info.value.status() == "StatusCode.NOT_FOUND"


# ---- statistics -------------------------------------------------------------------------------
def test_statistics_count_successes_and_failures(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    before_ms = int(time.time() * 1000)
    for client in (http, http, http, grpc_client, grpc_client):
        infer(client, "simple", ok=True)
    for client in (http, grpc_client, grpc_client):
        infer(client, "simple", ok=False)
    after_ms = int(time.time() * 1000) + 1

    (stats,) = http.get_inference_statistics("simple")["model_stats"]
    assert (stats["name"], stats["version"]) == ("simple", "1")
    assert stats["inference_count"] == 5
    assert stats["execution_count"] == 5
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 5 and inference["success"]["ns"] > 0
    assert inference["fail"]["count"] == 3
    assert inference["compute_infer"]["count"] == 5 and inference["compute_infer"]["ns"] > 0
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
        (1, 5)
    ]
    assert before_ms <= stats["last_inference"] <= after_ms

    (over_grpc,) = grpc_client.get_inference_statistics("simple", "1", as_json=True)["model_stats"]
    assert over_grpc["inference_count"] == "5"  # protobuf's JSON writes 64-bit numbers as text
    assert over_grpc["inference_stats"]["success"]["count"] == "5"
    assert over_grpc["inference_stats"]["fail"]["count"] == "3"
    assert int(over_grpc["last_inference"]) == stats["last_inference"]
    message = grpc_client.get_inference_statistics("simple").model_stats[0]
    assert (message.inference_stats.success.count, message.inference_stats.fail.count) == (5, 3)


def test_statistics_of_every_model(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    every = {(s["name"], s["version"]) for s in http.get_inference_statistics()["model_stats"]}
    assert {("simple", "1"), ("linear_batched", "1"), ("stats", "1")} <= every
    over_grpc = grpc_client.get_inference_statistics(model_name="").model_stats
    assert {(s.name, s.version) for s in over_grpc} == every


def test_a_version_never_used_reports_zeros(http: httpclient.InferenceServerClient) -> None:
    (stats,) = http.get_inference_statistics("identity_bytes")["model_stats"]
    assert stats["version"] == "1"
    assert (stats["inference_count"], stats["last_inference"]) == (0, 0)
    assert stats["inference_stats"]["success"] == {"count": 0, "ns": 0}


def test_statistics_of_an_unknown_model(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as info:
        http.get_inference_statistics("no_such_model")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        grpc_client.get_inference_statistics("simple", "9")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_a_model_named_stats(
    http: httpclient.InferenceServerClient, grpc_client: grpcclient.InferenceServerClient
) -> None:
    infer(http, "stats", ok=True)
    infer(grpc_client, "stats", ok=True)
    assert http.is_model_ready("stats")
    assert http.get_model_metadata("stats", "1")["name"] == "stats"
    assert grpc_client.get_model_metadata("stats").name == "stats"
    assert http.get_model_config("stats")["name"] == "stats"
    (own,) = http.get_inference_statistics("stats")["model_stats"]
    assert (own["name"], own["inference_stats"]["success"]["count"]) == ("stats", 2)
