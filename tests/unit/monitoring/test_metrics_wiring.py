"""``GET /metrics`` and the monitoring observers as install() plugs them into an App."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.app import App, build_app
from modelyard.monitoring import wiring
from modelyard.monitoring.logs import AccessLogObserver
from modelyard.monitoring.metrics import Metrics, MetricsObserver
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from tests.testmodels import simple_model
from tests.unit.frontends.conftest import Client

BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "simple.onnx"), name="simple")
    reg.close()
    return tmp_path / "reg"


@pytest.fixture
def make_app(registry_dir: Path) -> Iterator[Any]:
    apps: list[App] = []

    def make(**overrides: Any) -> App:
        settings = Settings.model_construct(registry=str(registry_dir), **overrides)
        app = build_app(settings, features=False)
        wiring.install(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def test_metrics_route_serves_the_text_format_with_request_counts(make_app: Any) -> None:
    app = make_app()
    client = Client(app.rest_app())
    assert client.post("/v2/models/simple/infer", json=BODY).status_code == 200
    assert client.post("/v2/models/nosuch/infer", json=BODY).status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert (
        'modelyard_requests_total{code="OK",endpoint="simple",model="simple",route="",'
        'version="1"} 1.0' in text
    )
    assert 'model="_unknown"' in text and "nosuch" not in text
    assert "modelyard_model_loads_total" in text
    assert "modelyard_process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text  # one process: the standard collectors too
    assert isinstance(app.extras["metrics"], Metrics)


def test_metrics_off_serves_no_route_and_adds_no_observer(make_app: Any) -> None:
    app = make_app(metrics=False)
    assert Client(app.rest_app()).get("/metrics").status_code == 404
    assert not any(isinstance(o, MetricsObserver) for o in app.observers.observers)
    assert "metrics" not in app.extras


def test_access_log_observer_only_when_sampled(make_app: Any) -> None:
    sampled = make_app(access_log_sample=0.5)
    assert any(isinstance(o, AccessLogObserver) for o in sampled.observers.observers)
    off = make_app(access_log_sample=0.0)
    assert not any(isinstance(o, AccessLogObserver) for o in off.observers.observers)


def test_features_register_their_own_metrics_in_the_shared_registry(make_app: Any) -> None:
    from prometheus_client import Counter

    app = make_app()
    metrics = app.extras["metrics"]
    assert isinstance(metrics, Metrics)
    dropped = Counter("modelyard_test_dropped", "Dropped.", registry=metrics.registry)
    dropped.inc(3)
    assert "modelyard_test_dropped_total 3.0" in Client(app.rest_app()).get("/metrics").text
