"""Endpoints in a real server process: applied through the management API (and directly in the
registry, picked up by the watcher), called like a model over REST (httpx, tritonclient) and
gRPC, with weighted sticky routes, fallbacks on errors and NaN, and the response cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper

from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import OPSET, identity_model

pytestmark = pytest.mark.integration

FP32_2D = TensorSpec(name="INPUT0", datatype=Datatype.FP32, shape=(-1, -1))
OUT_2D = TensorSpec(name="OUTPUT0", datatype=Datatype.FP32, shape=(-1, -1))


class BrokenModel(PythonModel):
    """Fails on every real request (zeros, the warm-up, pass), like a model with a bug."""

    signature: ClassVar[Signature | None] = Signature(inputs=(FP32_2D,), outputs=(OUT_2D,))

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["INPUT0"])
        if x.any():
            raise RuntimeError("this model is broken")
        return {"OUTPUT0": x}


def scaled_model(path: Path, factor: float) -> Path:
    """INPUT0 FP32 [-1, -1] -> OUTPUT0 = factor * INPUT0."""
    k = helper.make_tensor("K", TensorProto.FLOAT, [], [factor])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["INPUT0", "K"], ["OUTPUT0"])],
        f"scaled_{factor:g}",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", "n"])],
        initializer=[k],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``scorer`` v1 = x, v2 = 2x; ``backup`` = 3x; ``broken`` raises; ``nanny`` echoes NaN."""
    root = tmp_path_factory.mktemp("endpoints")
    files = root / "models"
    with Registry(root / "reg") as reg:
        reg.push(identity_model(Datatype.FP32, files / "v1.onnx"), name="scorer")
        reg.push(scaled_model(files / "v2.onnx", 2.0), name="scorer")
        reg.push(scaled_model(files / "backup.onnx", 3.0), name="backup")
        reg.push(BrokenModel(), name="broken")
        nan_ok = Signature(
            inputs=(FP32_2D.model_copy(update={"allow_nonfinite": True}),), outputs=(OUT_2D,)
        )
        reg.push(
            identity_model(Datatype.FP32, files / "nanny.onnx"), name="nanny", signature=nan_ok
        )
    return root / "reg"


@pytest.fixture(scope="module")
def server(registry_dir: Path) -> Iterator[ServerProcess]:
    proc = start_server(registry_dir, env={"MODELYARD_WATCH_INTERVAL_S": "0.2"})
    try:
        yield proc
    finally:
        assert proc.terminate() == 0


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


AB: dict[str, Any] = {
    "routes": [
        {"name": "v1", "model": "scorer", "version": 1, "weight": 50},
        {"name": "v2", "model": "scorer", "version": 2, "weight": 50},
    ],
    "sticky_key": "x-user-id",
    "cache": {"ttl_s": 60},
}
STATIC_ZERO = {"OUTPUT0": {"datatype": "FP32", "shape": [1, 2], "data": [0, 0]}}


def put(client: httpx.Client, name: str, spec: dict[str, Any]) -> httpx.Response:
    return client.put(f"/v2/endpoints/{name}", json=spec)


def infer(client: httpx.Client, name: str, values: list[float], **headers: str) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, len(values)], "datatype": "FP32", "data": values}
        ]
    }
    return client.post(f"/v2/models/{name}/infer", json=body, headers=headers)


@pytest.fixture(scope="module")
def ab(client: httpx.Client) -> str:
    response = put(client, "ab", AB)
    assert response.status_code == 201, response.text
    return "ab"


def test_routes_are_named_in_header_parameters_and_version(client: httpx.Client, ab: str) -> None:
    seen: dict[str, int] = {}
    for user in range(40):
        response = infer(client, ab, [1.0, 2.0], **{"x-user-id": f"user-{user}"})
        assert response.status_code == 200, response.text
        route = response.headers["x-modelyard-route"]
        doc = response.json()
        assert doc["model_name"] == ab
        assert doc["parameters"]["route"] == route
        factor = {"v1": 1, "v2": 2}[route]
        assert doc["model_version"] == str(factor)
        assert doc["outputs"][0]["data"] == [1.0 * factor, 2.0 * factor]
        seen[route] = seen.get(route, 0) + 1
    assert set(seen) == {"v1", "v2"}  # 40 users: both halves of a 50/50 split are used


def test_a_sticky_key_always_lands_on_the_same_route(client: httpx.Client, ab: str) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        routes = {
            infer(client, ab, [float(i)], **{"x-user-id": user}).headers["x-modelyard-route"]
            for i in range(6)
        }
        assert len(routes) == 1, (user, routes)


def test_repeat_request_is_a_cache_hit(client: httpx.Client, ab: str) -> None:
    first = infer(client, ab, [7.0, 7.5], **{"x-user-id": "erin"}).json()
    again = infer(client, ab, [7.0, 7.5], **{"x-user-id": "erin"}).json()
    assert "cache" not in first["parameters"]
    assert again["parameters"]["cache"] == "hit"
    assert again["outputs"] == first["outputs"]
    assert again["model_version"] == first["model_version"]


def test_tritonclient_http_and_grpc_call_an_endpoint_like_a_model(
    server: ServerProcess, ab: str
) -> None:
    data = np.array([[1.0, 4.0]], dtype=np.float32)
    key = "frank"
    http = httpclient.InferenceServerClient(url=server.http_url)
    try:
        inp = httpclient.InferInput("INPUT0", [1, 2], "FP32")
        inp.set_data_from_numpy(data)
        result = http.infer(ab, [inp], headers={"x-user-id": key})  # (it adds to the dict)
        route = result.get_response()["parameters"]["route"]
        factor = {"v1": 1, "v2": 2}[route]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * factor)
        assert http.get_model_metadata(ab)["name"] == ab
        assert http.is_model_ready(ab)
    finally:
        http.close()
    grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        ginp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
        ginp.set_data_from_numpy(data)
        gresult = grpc.infer(ab, [ginp], headers={"x-user-id": key})
        response = gresult.get_response(as_json=True)
        assert response["parameters"]["route"]["string_param"] == route  # same key, same route
        assert response["model_version"] == str(factor)
        np.testing.assert_array_equal(gresult.as_numpy("OUTPUT0"), data * factor)
    finally:
        grpc.close()


def test_a_failing_model_falls_back_to_the_backup(client: httpx.Client) -> None:
    spec = {
        "routes": [{"name": "main", "model": "broken", "weight": 100}],
        "fallback": {"on": ["error"], "chain": [{"kind": "model", "model": "backup"}]},
    }
    assert put(client, "guarded", spec).status_code == 201
    for _ in range(3):
        response = infer(client, "guarded", [1.0, 2.0])
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["parameters"]["fallback"] == "error"
        assert doc["parameters"]["answered_by"] == "backup:1"
        assert doc["outputs"][0]["data"] == [3.0, 6.0]
        assert response.headers["x-modelyard-route"] == "main"
    assert infer(client, "broken", [1.0]).status_code == 500  # the model itself still fails


def test_nan_outputs_fall_back_to_a_static_default(
    client: httpx.Client, server: ServerProcess
) -> None:
    spec = {
        "routes": [{"name": "main", "model": "nanny", "weight": 100}],
        "fallback": {"on": ["nonfinite"], "chain": [{"kind": "static", "outputs": STATIC_ZERO}]},
    }
    assert put(client, "nanguard", spec).status_code == 201
    http = httpclient.InferenceServerClient(url=server.http_url)
    try:
        inp = httpclient.InferInput("INPUT0", [1, 2], "FP32")
        inp.set_data_from_numpy(np.array([[1.0, np.nan]], dtype=np.float32), binary_data=True)
        result = http.infer("nanguard", [inp])
    finally:
        http.close()
    params = result.get_response()["parameters"]
    assert params["fallback"] == "nonfinite" and params["answered_by"] == "static"
    assert result.as_numpy("OUTPUT0").tolist() == [[0.0, 0.0]]


def test_invalid_specs_get_400_or_404_and_change_nothing(client: httpx.Client) -> None:
    unknown = put(client, "bad", {"routes": [{"name": "a", "model": "nope", "weight": 100}]})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]
    weights = put(client, "bad", {"routes": [{"name": "a", "model": "scorer", "weight": 90}]})
    assert weights.status_code == 400 and "sum to 100" in weights.json()["error"]
    assert client.get("/v2/endpoints/bad").status_code == 404


def test_an_endpoint_applied_in_the_registry_reaches_the_running_server(
    server: ServerProcess, registry_dir: Path, client: httpx.Client
) -> None:
    with Registry(registry_dir) as reg:
        EndpointStore(reg).apply(
            {"name": "late", "routes": [{"name": "only", "model": "backup", "weight": 100}]}
        )
    server.wait_for(lambda: infer(client, "late", [1.0]).status_code == 200, timeout=30)
    assert infer(client, "late", [2.0]).json()["outputs"][0]["data"] == [6.0]
    with Registry(registry_dir) as reg:
        EndpointStore(reg).delete("late")
    server.wait_for(lambda: infer(client, "late", [1.0]).status_code == 404, timeout=30)


# ---- the store on PostgreSQL ------------------------------------------------------------------
def test_concurrent_applies_on_postgres_get_distinct_revisions(
    pg_schema_url: str, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    artifacts = str(tmp_path / "artifacts")
    with Registry(pg_schema_url, artifacts=artifacts) as reg:
        reg.push(identity_model(Datatype.FP32, tmp_path / "m.onnx"), name="scorer")
        store = EndpointStore(reg)
        seq0 = store.revision()

    def apply(i: int) -> int:
        with Registry(pg_schema_url, artifacts=artifacts) as own:
            spec = {"name": "busy", "routes": [{"name": f"r{i}", "model": "scorer", "weight": 100}]}
            return EndpointStore(own).apply(spec).revision

    with ThreadPoolExecutor(max_workers=6) as pool:
        revisions = sorted(pool.map(apply, range(12)))
    assert revisions == list(range(1, 13))
    with Registry(pg_schema_url, artifacts=artifacts) as reg:
        store = EndpointStore(reg)
        assert store.revision() == seq0 + 12
        assert store.get("busy").revision == 12
        store.delete("busy")
        assert store.list() == [] and store.revision() == seq0 + 13
