"""traffic.wiring.install: the dataplane wrapper, the management routes, and the watcher that
reloads endpoints when the registry change counter moves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.app import App, build_app
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.wiring import EndpointWatcher

SPEC = {"name": "ep", "routes": [{"name": "main", "model": "ident", "weight": 100}]}


@pytest.fixture
def app(registry: Registry, tmp_path: Path) -> Iterator[App]:
    settings = Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1)
    built = build_app(settings)
    yield built
    built.close()


def test_install_wraps_the_dataplane_and_mounts_the_api(app: App) -> None:
    traffic = app.extras["traffic"]
    assert isinstance(traffic, TrafficDataPlane)
    assert isinstance(app.extras["endpoints"], EndpointStore)
    paths = {(r.method, r.path) for r in app.routes}
    assert {("GET", "/v2/endpoints"), ("PUT", "/v2/endpoints/{name}")} <= paths
    assert traffic.inner is app.serving or isinstance(traffic.inner, object)


def test_endpoints_present_at_start_are_served(registry: Registry, tmp_path: Path) -> None:
    EndpointStore(registry).apply(SPEC)
    app = build_app(Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1))
    try:
        traffic = app.extras["traffic"]
        assert isinstance(traffic, TrafficDataPlane)
        assert traffic.endpoint_names() == ["ep"]
    finally:
        app.close()


def test_watcher_reloads_only_when_the_registry_changed(registry: Registry) -> None:
    store = EndpointStore(registry)
    traffic = TrafficDataPlane(object(), resolve=_never)  # type: ignore[arg-type]
    watcher = EndpointWatcher(store, traffic)
    assert watcher.refresh() is True and traffic.endpoint_names() == []
    assert watcher.refresh() is False
    store.apply(SPEC)
    assert asyncio.run(watcher.poll()) is True
    assert traffic.endpoint_names() == ["ep"]
    kept = traffic.endpoint("ep")
    assert asyncio.run(watcher.poll()) is False
    store.apply({**SPEC, "timeout_ms": 5})
    assert asyncio.run(watcher.poll()) is True
    assert traffic.endpoint("ep") is not kept
    store.delete("ep")
    assert asyncio.run(watcher.poll()) is True and traffic.endpoint_names() == []


def test_the_log_says_what_changed_not_every_reload(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    store = EndpointStore(registry)
    traffic = TrafficDataPlane(object(), resolve=_never)  # type: ignore[arg-type]
    watcher = EndpointWatcher(store, traffic)
    with caplog.at_level(logging.INFO, logger="modelyard.traffic"):
        watcher.refresh()
        store.apply(SPEC)
        asyncio.run(watcher.poll())
        registry.set_alias("ident", "beta", 1)  # a registry change that is no endpoint's
        asyncio.run(watcher.poll())
        store.apply({**SPEC, "timeout_ms": 5})
        asyncio.run(watcher.poll())
        store.delete("ep")
        asyncio.run(watcher.poll())
    lines = [r.getMessage() for r in caplog.records if r.name == "modelyard.traffic"]
    assert lines == [
        "endpoints changed: +ep",
        "endpoints changed: ~ep (revision 2)",
        "endpoints changed: -ep",
    ]


async def _never(model: str, ref: str | None) -> str:
    raise AssertionError("not called")
