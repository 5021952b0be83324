"""The fleet feature in a real (socket-free) app: the watched resolver replaces the serving one,
and cold-start timings show in GET /v2/fleet/cache, the model metadata and the repository
index; request counts reach the registry at shutdown."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.app import App, build_app
from modelyard.core import fleet_wiring
from modelyard.core.hotswap import HotSwapper, WatchedResolver
from modelyard.core.usage import UsageRecorder
from modelyard.core.watch import RegistryWatcher
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.testmodels import simple_model
from tests.unit.frontends.conftest import Client

X = np.arange(16, dtype=np.int32).reshape(1, 16).tolist()
BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": X},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": X},
    ]
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with Registry(tmp_path / "reg") as reg:
        reg.push(simple_model(tmp_path / "simple.onnx"), name="simple", alias="production")
    settings = Settings.model_construct(registry=str(tmp_path / "reg"))
    built = build_app(settings, features=False)
    fleet_wiring.install(built)
    yield built
    built.close()


def test_install_plugs_in_its_parts(app: App) -> None:
    assert isinstance(app.serving.resolver, WatchedResolver)
    assert isinstance(app.extras["watcher"], RegistryWatcher)
    assert isinstance(app.extras["hotswap"], HotSwapper)
    assert isinstance(app.extras["usage"], UsageRecorder)
    assert app.extras["usage"] in app.observers.observers
    assert {(r.method, r.path) for r in app.routes} == {("GET", fleet_wiring.CACHE_PATH)}
    assert len(app.background) == 3  # watcher, usage flush, memory trim
    assert app.serving.cold_start is not None


def test_cold_start_timings_are_exposed(app: App) -> None:
    client = Client(app.rest_app())
    assert client.post("/v2/models/simple/infer", json=BODY).status_code == 200
    assert client.post("/v2/models/simple/infer", json=BODY).status_code == 200

    doc = client.get(fleet_wiring.CACHE_PATH).json()
    assert doc["stats"]["loads"] == 1 and doc["stats"]["hits"] == 1
    assert doc["stats"]["hit_ratio"] == 0.5
    assert doc["bytes_in_use"] > 0 and doc["rss_bytes"] > 0
    assert doc["pid"] == os.getpid()  # which worker answered, with --workers N
    (entry,) = doc["entries"]
    assert (entry["model"], entry["version"], entry["state"]) == ("simple", 1, "READY")
    for timing in ("fetch_s", "load_s", "warmup_s", "first_request_s"):
        assert entry[timing] >= 0, timing
    assert entry["first_request_s"] >= entry["load_s"]  # the first request waited for the load
    assert doc["disk"]["entries"] == 0  # a local artifact store needs no local copy
    assert doc["watch"]["running"] is False and doc["watch"]["swaps"] == []

    meta = client.get("/v2/models/simple").json()
    assert set(meta["parameters"]["cold_start"]) == {
        "fetch_s",
        "load_s",
        "warmup_s",
        "first_request_s",
    }
    (row,) = client.post("/v2/repository/index").json()
    assert row["state"] == "READY"
    assert row["reason"].startswith("cold start: fetch_s=")


def test_request_counts_reach_the_registry_at_close(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as reg:
        reg.push(simple_model(tmp_path / "simple.onnx"), name="simple")
    app = build_app(Settings.model_construct(registry=str(tmp_path / "reg")), features=False)
    fleet_wiring.install(app)
    client = Client(app.rest_app())
    for _ in range(3):
        assert client.post("/v2/models/simple/infer", json=BODY).status_code == 200
    app.close()
    with Registry(tmp_path / "reg") as reg, reg.store.transaction(write=False) as tx:
        rows = tx.execute("SELECT model, version, requests FROM model_usage").rows
    assert rows == [("simple", 1, 3)]
