"""The control feature inside a built App (in-process, no sockets): stats are observed and
flushed, the traffic layer gets the rollout view and the shadows, shadows are compared."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from modelyard.app import App, build_app
from modelyard.control.controller import Controller
from modelyard.control.rollout_view import RegistryRolloutView
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic.shadow import ShadowRunner
from modelyard.traffic.shadow_report import summarize_shadows
from modelyard.traffic.stats import SHADOW_ROUTE, StatsCollector
from modelyard.traffic.stats_store import read_rows
from modelyard.types import InferRequest, RequestContext
from tests.rolloutmodels import Scorer


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    path = tmp_path / "reg"
    with Registry(path) as reg:
        reg.push(Scorer(), name="scorer")
        reg.push(Scorer(flip_mod=10), name="scorer-b")
        EndpointStore(reg).apply(
            {
                "name": "ep",
                "routes": [{"name": "main", "model": "scorer", "weight": 100}],
                "shadows": [{"model": "scorer-b", "compare": {"kind": "argmax"}}],
            }
        )
    return path


def build(registry_dir: Path, **settings: object) -> App:
    return build_app(Settings(registry=str(registry_dir), grpc_port=-1, **settings))  # type: ignore[arg-type]


def test_install_hands_the_hooks_to_the_traffic_layer(registry_dir: Path) -> None:
    app = build(registry_dir, controller=True)
    try:
        traffic = app.extras["traffic"]
        assert isinstance(app.extras["rollout_view"], RegistryRolloutView)
        assert isinstance(app.extras["shadows"], ShadowRunner)
        assert traffic.rollout_view is app.extras["rollout_view"]
        assert traffic.shadows is app.extras["shadows"]
        assert isinstance(app.extras["stats"], StatsCollector)
        assert app.extras["stats"] in app.observers.observers
        assert isinstance(app.extras["controller"], Controller)
    finally:
        app.close()
    standby = build(registry_dir, controller=False, replica_id="pod-1")
    try:
        assert "controller" not in standby.extras
        stats = standby.extras["stats"]
        assert isinstance(stats, StatsCollector) and stats.replica == "pod-1"
    finally:
        standby.close()


def test_shadow_disagreeing_on_a_known_tenth_reports_ninety_percent(registry_dir: Path) -> None:
    app = build(
        registry_dir,
        controller=False,
        replica_id="pod-1",
        shadow_max_concurrency=64,
        shadow_isolation="inline",  # the helper process is tested in tests/integration
    )
    shadows = app.extras["shadows"]
    assert isinstance(shadows, ShadowRunner)

    async def traffic() -> None:
        for i in range(1, 1001):
            request = InferRequest(inputs={"x": np.asarray([[float(i)]], dtype=np.float32)})
            response = await app.dataplane.infer("ep", None, request, RequestContext())
            assert response.parameters["route"] == "main"
        await shadows.drain()

    try:
        asyncio.run(traffic())
    finally:
        app.close()  # writes the last (partial) interval
    with Registry(registry_dir) as reg:
        rows = read_rows(reg, "ep", since=0)
    (summary,) = summarize_shadows(rows)
    assert summary.model == "scorer-b" and summary.version == 1
    assert summary.compared == 1000 - summary.dropped
    assert summary.agreement == pytest.approx(0.90, abs=0.02)
    assert summary.requests == summary.compared and summary.errors == 0
    assert summary.mean_latency_delta_s is not None
    routes = {(r.route, r.model) for r in rows}
    assert routes == {("main", "scorer"), (SHADOW_ROUTE, "scorer-b")}
    assert all(r.replica == "pod-1" for r in rows)
