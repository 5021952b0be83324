"""Model configuration and statistics of an endpoint: its primary route's version, under the
endpoint's name, as its metadata does (REST app over a TrafficDataPlane and a real registry)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.registry.registry import Registry
from tests.unit.traffic.test_endpoints_api import Harness

# The primary route (largest weight) serves ident's production version, 2.
SPEC: dict[str, Any] = {
    "routes": [
        {"name": "main", "model": "ident", "weight": 90},
        {"name": "old", "model": "ident", "version": 1, "weight": 10},
    ],
}


@pytest.fixture
def harness(registry: Registry) -> Iterator[Harness]:
    h = Harness(registry)
    h.request("PUT", "/v2/endpoints/ab", json=SPEC)
    yield h
    h.close()


def test_config_of_an_endpoint(harness: Harness) -> None:
    response = harness.request("GET", "/v2/models/ab/config")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["name"] == "ab"
    assert [(t["name"], t["data_type"]) for t in doc["input"]] == [("INPUT0", "TYPE_FP32")]
    assert {k: v["string_value"] for k, v in doc["parameters"].items()} == {
        "served_version": "2",
        "endpoint": "ab",
        "model": "ident",
        "route": "main",
    }
    # With a version the name is a model's, as for metadata: there is no model "ab".
    assert harness.request("GET", "/v2/models/ab/versions/2/config").status_code == 404


def test_statistics_of_an_endpoint_are_its_primary_version_s(harness: Harness) -> None:
    for _ in range(3):
        assert harness.infer("ident", 1.0).status_code == 200  # the model itself, version 2
    response = harness.request("GET", "/v2/models/ab/stats")
    assert response.status_code == 200, response.text
    (stats,) = response.json()["model_stats"]
    assert (stats["name"], stats["version"]) == ("ab", "2")
    assert stats["inference_stats"]["success"]["count"] == 3
    model = harness.request("GET", "/v2/models/ident/stats").json()["model_stats"]
    assert [(s["version"], s["inference_stats"]["success"]["count"]) for s in model] == [("2", 3)]


def test_every_model_lists_models_not_endpoints(harness: Harness) -> None:
    listed = harness.request("GET", "/v2/models/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in listed] == [("ident", "2"), ("linear", "1")]
