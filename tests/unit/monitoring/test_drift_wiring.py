"""drift_wiring.install on an App: what it plugs in, the metrics it registers, and that closing
the App flushes payload logs and drift sketches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from modelyard.app import App, make_loader, runtime_options
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import ModelCache
from modelyard.core.observer import Observers
from modelyard.core.serving import ServingDataPlane
from modelyard.monitoring import drift, drift_wiring
from modelyard.monitoring.drift_reports import load_sketches
from modelyard.monitoring.payload_log import PayloadLogger
from modelyard.monitoring.payload_sinks import read_jsonl
from modelyard.monitoring.sketches import DriftAggregator
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.types import InferRequest, RequestContext
from tests.testmodels import linear_fp32_model


def bare_app(settings: Settings, clock: FakeClock) -> App:
    """An App with no feature installed (build_app minus _features)."""
    registry = Registry.from_settings(settings, clock=clock)
    cache = ModelCache(
        make_loader(registry, runtime_options(settings)), budget_bytes=1 << 30, clock=clock
    )
    observers = Observers()
    serving = ServingDataPlane(registry, cache, clock=clock, observer=observers)
    return App(settings, registry, cache, serving, serving, observers, clock=clock)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    settings = Settings(
        registry=str(tmp_path / "reg"),
        payload_log=str(tmp_path / "payloads"),
        payload_log_rate=1.0,
        payload_log_redact=("secret",),
        replica_id="unit-1",
        stats_interval_s=10.0,
    )
    application = bare_app(settings, FakeClock())
    rng = np.random.default_rng(1)
    reference = drift.reference_stats({"input": rng.normal(size=(1000, 20))})
    application.registry.push(
        linear_fp32_model(tmp_path / "linear.onnx"),
        name="linear",
        metadata={drift.REFERENCE_KEY: reference},
    )
    yield application


def test_install_plugs_in_payload_log_sketches_and_controller(app: App, tmp_path: Path) -> None:
    drift_wiring.install(app)
    kinds = {type(o) for o in app.observers.observers}
    assert kinds == {PayloadLogger, DriftAggregator}
    assert isinstance(app.extras["drift_controller"], drift_wiring.DriftController)
    assert app.extras["drift_controller"].holder == "unit-1"
    assert len(app.closers) == 2 and len(app.background) == 3

    async def go() -> None:
        for i in range(5):
            request = InferRequest(inputs={"input": np.ones((4, 20), dtype=np.float32)})
            await app.dataplane.infer("linear", None, request, RequestContext(f"w{i}"))

    asyncio.run(go())
    app.close()  # closers: flush the payload log, write the open sketch interval
    with Registry(tmp_path / "reg") as reg:
        sketches = load_sketches(reg, since=0)
    assert [s["rows"] for s in sketches[("linear", 1)]] == [20]
    assert sorted(r["request_id"] for r in read_jsonl(tmp_path / "payloads")) == [
        f"w{i}" for i in range(5)
    ]


def test_no_payload_log_and_no_controller_when_off(tmp_path: Path) -> None:
    settings = Settings(registry=str(tmp_path / "reg"), controller=False)
    app = bare_app(settings, FakeClock())
    drift_wiring.install(app)
    assert [type(o) for o in app.observers.observers] == [DriftAggregator]
    assert "payload_log" not in app.extras and "drift_controller" not in app.extras
    app.close()


def test_replica_name_defaults_to_host_and_pid(tmp_path: Path) -> None:
    assert drift_wiring.replica_name(Settings(registry=str(tmp_path), replica_id="x")) == "x"
    name = drift_wiring.replica_name(Settings(registry=str(tmp_path)))
    assert name.rsplit("-", 1)[1].isdigit()


def test_metrics_and_lease_holder_are_picked_up_once_serving(app: App) -> None:
    registry = CollectorRegistry()
    drift_wiring.install(app)
    # Features installed later publish these; the background start-up task reads them.
    app.extras["metrics"] = SimpleNamespace(registry=registry)
    app.extras["controller"] = SimpleNamespace(holder="ctl-7")
    payload: PayloadLogger = app.extras["payload_log"]  # type: ignore[assignment]
    payload.dropped = 3  # dropped before the metrics existed are carried over
    attach = app.background[-1]
    asyncio.run(attach())  # type: ignore[arg-type]
    assert payload.on_drop is not None
    payload.on_drop(1)
    assert registry.get_sample_value("modelyard_payload_log_dropped_total") == 4
    assert registry.get_sample_value("modelyard_drift_sketch_dropped_total") == 0

    report: dict[str, Any] = {
        "model": "linear",
        "version": 1,
        "status": "alarm",
        "inputs": [{"feature": "input[0]", "psi": 0.5, "ks": 0.3}],
        "outputs": [{"feature": "label", "psi": 0.01, "ks": None}],
    }
    controller: drift_wiring.DriftController = app.extras["drift_controller"]  # type: ignore[assignment]
    assert controller.holder == "ctl-7" and controller.on_reports is not None
    controller.on_reports([report])
    labels = {"model": "linear", "version": "1"}
    assert registry.get_sample_value("modelyard_drift_status", labels) == 2.0
    psi = registry.get_sample_value("modelyard_drift_psi", {**labels, "feature": "inputs:input[0]"})
    assert psi == 0.5
    ks = registry.get_sample_value("modelyard_drift_ks", {**labels, "feature": "outputs:label"})
    assert ks is None  # categorical: no KS series
    app.close()
