"""Model configuration and statistics over REST: the JSON documents and the routes, including a
model literally named ``stats`` next to ``GET /v2/models/stats``."""

from __future__ import annotations

import orjson
import pytest

from modelyard.frontends.codec import model_config_doc, statistics_doc
from modelyard.types import (
    BatchStatistics,
    ConfigTensor,
    Datatype,
    ModelConfig,
    ModelStatistics,
    StatDuration,
)
from tests.unit.frontends.conftest import Client
from tests.unit.frontends.fakes import FakeDataPlane
from tests.unit.frontends.test_rest import simple_doc


# ---- documents --------------------------------------------------------------------------------
def test_model_config_doc_of_a_batched_version() -> None:
    config = ModelConfig(
        name="iris",
        version="2",
        platform="onnx",
        backend="onnx",
        max_batch_size=32,
        inputs=(ConfigTensor("input", Datatype.FP32, (4,)),),
        outputs=(
            ConfigTensor("label", Datatype.INT64, (1,), reshape=()),
            ConfigTensor("text", Datatype.BYTES, (-1,)),
        ),
        max_queue_delay_us=500,
        instance_count=4,
        parameters={"served_version": "2"},
    )
    assert model_config_doc(config) == {
        "name": "iris",
        "platform": "onnx",
        "backend": "onnx",
        "max_batch_size": 32,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [
            {"name": "label", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
            {"name": "text", "data_type": "TYPE_STRING", "dims": [-1]},
        ],
        "instance_group": [{"name": "iris", "kind": "KIND_CPU", "count": 4}],
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
        "parameters": {"served_version": {"string_value": "2"}},
    }


def test_model_config_doc_without_batching_has_no_dynamic_batching() -> None:
    config = ModelConfig(
        "m",
        "1",
        "sklearn",
        "sklearn",
        0,
        (ConfigTensor("x", Datatype.FP64, (-1, 10)),),
        (),
        None,
        1,
    )
    doc = model_config_doc(config)
    assert doc["max_batch_size"] == 0
    assert doc["input"][0]["dims"] == [-1, 10]
    assert "dynamic_batching" not in doc


def test_statistics_doc() -> None:
    stats = ModelStatistics(
        name="m",
        version="1",
        last_inference_ms=1_700_000_000_500,
        inference_count=5,
        execution_count=2,
        success=StatDuration(3, 3_000),
        fail=StatDuration(1, 100),
        queue=StatDuration(3, 30),
        compute_input=StatDuration(3, 0),
        compute_infer=StatDuration(3, 2_000),
        compute_output=StatDuration(3, 0),
        batch_stats=(
            BatchStatistics(2, StatDuration(1, 0), StatDuration(1, 700), StatDuration(1, 0)),
        ),
    )
    zero = {"count": 0, "ns": 0}
    assert statistics_doc([stats]) == {
        "model_stats": [
            {
                "name": "m",
                "version": "1",
                "last_inference": 1_700_000_000_500,
                "inference_count": 5,
                "execution_count": 2,
                "inference_stats": {
                    "success": {"count": 3, "ns": 3_000},
                    "fail": {"count": 1, "ns": 100},
                    "queue": {"count": 3, "ns": 30},
                    "compute_input": {"count": 3, "ns": 0},
                    "compute_infer": {"count": 3, "ns": 2_000},
                    "compute_output": {"count": 3, "ns": 0},
                    "cache_hit": zero,
                    "cache_miss": zero,
                },
                "batch_stats": [
                    {
                        "batch_size": 2,
                        "compute_input": {"count": 1, "ns": 0},
                        "compute_infer": {"count": 1, "ns": 700},
                        "compute_output": {"count": 1, "ns": 0},
                    }
                ],
            }
        ]
    }
    assert statistics_doc([]) == {"model_stats": []}


# ---- routes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/v2/models/simple/config", "/v2/models/simple/versions/1/config"]
)
def test_model_config_route(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["name"], doc["max_batch_size"]) == ("simple", 0)
    assert [(t["name"], t["data_type"], t["dims"]) for t in doc["input"]] == [
        ("INPUT0", "TYPE_INT32", [-1, 16]),
        ("INPUT1", "TYPE_INT32", [-1, 16]),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no_such_model/config",
        "/v2/models/simple/versions/9/config",
        "/v2/models/no_such_model/stats",
        "/v2/models/simple/versions/9/stats",
    ],
)
def test_config_and_stats_of_unknown_model_or_version_are_404(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v2/models/stats", (None, None)),
        ("/v2/models/simple/stats", ("simple", None)),
        ("/v2/models/simple/versions/1/stats", ("simple", "1")),
    ],
)
def test_statistics_routes(
    client: Client, dataplane: FakeDataPlane, path: str, call: tuple[str | None, str | None]
) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert dataplane.stats_calls == [call]
    names = [s["name"] for s in response.json()["model_stats"]]
    assert names == (sorted(dataplane.models) if call[0] is None else [call[0]])


def test_statistics_are_read_only(client: Client) -> None:
    assert client.post("/v2/models/stats").status_code == 405
    assert client.post("/v2/models/simple/stats").status_code == 405


def test_a_model_named_stats_keeps_its_routes(client: Client, dataplane: FakeDataPlane) -> None:
    dataplane.models["stats"] = dataplane.models["simple"]
    dataplane.loaded.add("stats")
    response = client.post("/v2/models/stats/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "stats"
    assert client.get("/v2/models/stats/ready").status_code == 200
    assert client.get("/v2/models/stats/versions/1").json()["name"] == "stats"
    assert client.get("/v2/models/stats/config").json()["name"] == "stats"
    own = client.get("/v2/models/stats/stats").json()["model_stats"]
    assert [(s["name"], s["inference_count"]) for s in own] == [("stats", 1)]
    # The bare path is the statistics extension's "every model", as in Triton.
    every = client.get("/v2/models/stats").json()["model_stats"]
    assert {"simple", "stats"} <= {s["name"] for s in every}
    assert dataplane.stats_calls == [("stats", None), (None, None)]
