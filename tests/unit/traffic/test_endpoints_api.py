"""Endpoints end to end in one process, no sockets: the management REST API and V2 inference
through the REST app, over a TrafficDataPlane wrapping a real ServingDataPlane and registry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from modelyard.app import make_loader
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import ModelCache
from modelyard.core.serving import ServingDataPlane
from modelyard.frontends.rest import create_rest_app
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.settings import Settings
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.management import management_routes
from modelyard.traffic.spec import EndpointSpec
from modelyard.types import InferRequest, InferResponse, RequestContext

SPEC: dict[str, Any] = {
    "routes": [
        {"name": "v1", "model": "ident", "version": 1, "weight": 50},
        {"name": "v2", "model": "ident", "version": 2, "weight": 50},
    ],
    "sticky_key": "x-user-id",
}


class Harness:
    def __init__(self, registry: Registry) -> None:
        clock = FakeClock()
        self.cache = ModelCache(
            make_loader(registry, RuntimeOptions()), budget_bytes=1 << 30, clock=clock
        )
        self.serving = ServingDataPlane(registry, self.cache, resolve_ttl_s=0.0, clock=clock)
        self.serving.set_ready(True)

        async def resolve(model: str, ref: str | None) -> str:
            return str((await self.serving.resolver.resolve(model, ref)).version)

        self.traffic = TrafficDataPlane(self.serving, resolve=resolve, clock=clock)
        self.store = EndpointStore(registry)
        routes = management_routes(self.store, self.traffic)
        self.app = create_rest_app(
            self.traffic, Settings.model_construct(), extra_routes=routes, clock=clock
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def infer(self, name: str, value: float, **headers: str) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [value, value]}
            ]
        }
        return self.request("POST", f"/v2/models/{name}/infer", json=body, headers=headers)

    def close(self) -> None:
        self.cache.close()
        self.serving.close()


@pytest.fixture
def harness(registry: Registry) -> Iterator[Harness]:
    h = Harness(registry)
    yield h
    h.close()


def test_put_get_list_delete(harness: Harness) -> None:
    created = harness.request("PUT", "/v2/endpoints/ab", json=SPEC)
    assert created.status_code == 201
    assert created.json()["revision"] == 1 and created.json()["spec"]["name"] == "ab"
    updated = harness.request("PUT", "/v2/endpoints/ab", json={**SPEC, "name": "ab"})
    assert updated.status_code == 200 and updated.json()["revision"] == 2
    got = harness.request("GET", "/v2/endpoints/ab").json()
    assert got["spec"]["sticky_key"] == "x-user-id"
    listed = harness.request("GET", "/v2/endpoints").json()
    assert [e["name"] for e in listed["endpoints"]] == ["ab"]
    assert harness.request("DELETE", "/v2/endpoints/ab").json() == {"deleted": "ab"}
    assert harness.request("GET", "/v2/endpoints/ab").status_code == 404
    assert harness.request("DELETE", "/v2/endpoints/ab").status_code == 404


def test_put_serves_the_endpoint_at_once_and_delete_stops_it(harness: Harness) -> None:
    assert harness.infer("ab", 1.0).status_code == 404
    harness.request("PUT", "/v2/endpoints/ab", json=SPEC)
    response = harness.infer("ab", 1.0, **{"x-user-id": "u1"})
    assert response.status_code == 200
    doc = response.json()
    route = response.headers["x-modelyard-route"]
    assert doc["model_name"] == "ab"
    assert doc["model_version"] == route.removeprefix("v")
    assert doc["parameters"] == {"route": route, "answered_by": f"ident:{route[1:]}"}
    harness.request("DELETE", "/v2/endpoints/ab")
    assert harness.infer("ab", 1.0).status_code == 404


def test_sticky_header_pins_the_route(harness: Harness) -> None:
    harness.request("PUT", "/v2/endpoints/ab", json=SPEC)
    for user in ("alice", "bob", "carol"):
        routes = {
            harness.infer("ab", 1.0, **{"x-user-id": user}).headers["x-modelyard-route"]
            for _ in range(4)
        }
        assert len(routes) == 1


def test_plain_models_have_no_route_header(harness: Harness) -> None:
    response = harness.infer("ident", 1.0)
    assert response.status_code == 200 and "x-modelyard-route" not in response.headers


def test_v1_predict_says_the_route_too(harness: Harness) -> None:
    harness.request("PUT", "/v2/endpoints/ab", json=SPEC)
    body = {"instances": [[1.0, 1.0]]}
    response = harness.request("POST", "/v1/models/ab:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-modelyard-route"] in {r["name"] for r in SPEC["routes"]}
    plain = harness.request("POST", "/v1/models/ident:predict", json=body)
    assert plain.status_code == 200 and "x-modelyard-route" not in plain.headers


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({**SPEC, "routes": [{"name": "a", "model": "nope", "weight": 100}]}, 404, "'nope'"),
        ({**SPEC, "routes": [{"name": "a", "model": "ident", "weight": 10}]}, 400, "sum to 100"),
        ({**SPEC, "name": "other"}, 400, "differs from 'ab'"),
        ({**SPEC, "color": "red"}, 400, "color"),
        ([], 400, "JSON object"),
    ],
)
def test_put_refuses_bad_specs(harness: Harness, body: Any, status: int, fragment: str) -> None:
    response = harness.request("PUT", "/v2/endpoints/ab", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert harness.request("GET", "/v2/endpoints").json() == {"endpoints": []}


def test_put_refuses_bad_json(harness: Harness) -> None:
    response = harness.request("PUT", "/v2/endpoints/ab", content=b"{nope")
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_metadata_and_readiness_of_an_endpoint_come_from_its_primary_route(
    harness: Harness,
) -> None:
    spec = {
        **SPEC,
        "routes": [
            {"name": "old", "model": "ident", "version": 1, "weight": 30},
            {"name": "main", "model": "ident", "version": 2, "weight": 70},
        ],
    }
    harness.request("PUT", "/v2/endpoints/ab", json=spec)
    meta = harness.request("GET", "/v2/models/ab").json()
    assert meta["name"] == "ab"
    assert [i["name"] for i in meta["inputs"]] == ["INPUT0"]
    assert meta["parameters"]["route"] == "main"  # the largest weight, not the first route
    assert meta["parameters"]["served_version"] == "2"
    assert harness.request("GET", "/v2/models/ab/ready").status_code == 200
    assert harness.request("GET", "/v2/models/ab/versions/1").status_code == 404


def test_tritonclient_sees_the_route_in_response_parameters(harness: Harness) -> None:
    harness.request("PUT", "/v2/endpoints/ab", json=SPEC)
    data = np.ones((1, 2), dtype=np.float32)
    inp = httpclient.InferInput("INPUT0", [1, 2], "FP32")
    inp.set_data_from_numpy(data, binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp])
    headers = {"Inference-Header-Content-Length": str(json_size), "x-user-id": "u9"}
    raw = harness.request("POST", "/v2/models/ab/infer", content=body, headers=headers)
    assert raw.status_code == 200
    length = raw.headers.get("Inference-Header-Content-Length")
    result = httpclient.InferenceServerClient.parse_response_body(
        raw.content, header_length=int(length) if length else None
    )
    response = result.get_response()
    assert response["parameters"]["route"] == raw.headers["x-modelyard-route"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


class RecordingShadows:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def dispatch(
        self,
        endpoint: EndpointSpec,
        request: InferRequest,
        primary: asyncio.Future[InferResponse],
        ctx: RequestContext,
    ) -> None:
        self.seen.append((endpoint.name, primary.done()))
        primary.add_done_callback(lambda f: self.seen.append(("done", f.result() is not None)))


def test_shadows_get_the_primary_future_right_after_dispatch(harness: Harness) -> None:
    shadows = RecordingShadows()
    harness.traffic.shadows = shadows
    harness.request(
        "PUT", "/v2/endpoints/ab", json={**SPEC, "shadows": [{"model": "ident", "version": 1}]}
    )
    assert harness.infer("ab", 1.0).status_code == 200
    assert shadows.seen == [("ab", False), ("done", True)]
    harness.request("PUT", "/v2/endpoints/ab", json=SPEC)  # no shadows: not called
    harness.infer("ab", 1.0)
    assert len(shadows.seen) == 2


class BrokenShadows(RecordingShadows):
    def dispatch(self, *args: Any) -> None:
        raise RuntimeError("shadow bug")


def test_a_failing_shadow_dispatcher_never_costs_the_client(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.traffic.shadows = BrokenShadows()
    harness.request(
        "PUT", "/v2/endpoints/ab", json={**SPEC, "shadows": [{"model": "ident", "version": 1}]}
    )
    assert harness.infer("ab", 1.0).status_code == 200
    assert "shadow dispatch failed" in caplog.text
