"""The dashboard's server side, in process: the live series (a fake clock moves time), the
static page and its caching headers, and the JSON API over a real app without sockets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from modelyard.app import App, build_app
from modelyard.control.store import save_rollout
from modelyard.core.clock import FakeClock
from modelyard.core.observer import InferEvent
from modelyard.frontends import ui_counts, ui_routes
from modelyard.frontends.ui_routes import LiveSeries, load_assets
from modelyard.monitoring import ui_wiring
from modelyard.monitoring.drift import reference_stats
from modelyard.monitoring.drift_reports import save_report
from modelyard.monitoring.drift_wiring import DriftMetrics
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic import rollout
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.spec import parse_spec
from modelyard.traffic.stats import bucket_of, bucket_upper
from modelyard.types import InferRequest, RequestContext
from tests.testmodels import linear_fp32_model, simple_model
from tests.unit.frontends.conftest import Client

X = np.arange(16, dtype=np.int32).reshape(1, 16).tolist()
SIMPLE = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": X},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": X},
    ]
}
AB = {
    "name": "ab",
    "routes": [
        {"name": "a", "model": "simple", "version": 1, "weight": 50},
        {"name": "b", "model": "simple", "version": 2, "weight": 50},
    ],
}
SCORING = {
    "name": "scoring",
    "routes": [{"name": "stable", "model": "linear", "version": "production", "weight": 100}],
    "shadows": [{"model": "linear", "version": 2, "fraction": 0.5}],
    "fallback": {"on": ["error"], "chain": [{"kind": "model", "model": "linear", "version": 1}]},
    "rollout": {
        "candidate": {"model": "linear", "version": "candidate"},
        "steps": [{"weight": 25, "hold_s": 60}, {"weight": 100, "hold_s": 60}],
    },
}


def event(
    model: str = "m",
    *,
    version: str = "1",
    code: str = "OK",
    latency_s: float = 0.01,
    endpoint: str | None = None,
    route: str = "",
) -> InferEvent:
    return InferEvent(
        endpoint or model, model, version, route, code, latency_s, InferRequest({}), None,
        RequestContext(),
    )  # fmt: skip


# ---- LiveSeries ----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0, wall_start=1_700_000_000.0)


def test_rates_latency_and_errors_per_step(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    for latency in (0.001, 0.002, 0.004):  # second 1000: three requests
        live.on_infer(event(latency_s=latency))
    clock.advance(2)  # second 1002: one failure
    live.on_infer(event(code="INTERNAL", latency_s=0.5))
    clock.advance(1.5)  # now 1003.5: second 1003 is still running and left out

    window = live.window(minutes=5, step_s=1)
    assert (window.first, window.points) == (1000, 3)  # no older data than the process
    doc = live.snapshot(window, limit=10)
    (model,) = doc["models"]
    assert model["model"] == "m"
    assert model["rps"] == [3.0, 0.0, 1.0]
    assert model["p99_s"] == [bucket_upper(bucket_of(0.004)), None, bucket_upper(bucket_of(0.5))]
    assert model["error_rate"] == [0.0, None, 1.0]
    assert (model["requests"], model["errors"]) == (4, 1)
    assert model["recent"]["rps"] == 1.333  # 4 requests over 3 s: the process is that young
    assert model["recent"]["error_rate"] == 0.25
    assert doc["total"]["rps"] == model["rps"]
    assert doc["t0"] == pytest.approx(1_700_000_000.0)  # wall time of second 1000
    assert (doc["step_s"], doc["points"], doc["window_s"]) == (1, 3, 3)


def test_steps_sum_whole_seconds_and_stay_aligned(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    clock.advance(600)
    for _ in range(4):
        live.on_infer(event())
        live.on_infer(event())
        clock.advance(1)
    window = live.window(minutes=5)  # 300 s at the default resolution: 2 s steps
    assert window.step_s == 2 and window.points == 150 and window.end % 2 == 0
    series = live.snapshot(window, limit=1)["models"][0]["rps"]
    assert series[-2:] == [2.0, 2.0] and sum(series[:-2]) == 0


def test_unresolved_and_cancelled_requests_are_not_counted(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    live.on_infer(event("no-such-model", version="", code="NOT_FOUND"))
    live.on_infer(event(code="CANCELLED"))  # e.g. the losing copy of a hedged request
    clock.advance(2)
    doc = live.snapshot(live.window(1, 1), limit=10)
    assert doc["models"] == [] and doc["total"]["requests"] == 0


def test_busiest_models_first_up_to_the_limit(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    for name, n in (("quiet", 1), ("busy", 5), ("medium", 3), ("also-medium", 3)):
        for _ in range(n):
            live.on_infer(event(name))
    clock.advance(2)
    doc = live.snapshot(live.window(1, 1), limit=3)
    assert [m["model"] for m in doc["models"]] == ["busy", "also-medium", "medium"]
    assert doc["models_with_traffic"] == 4
    assert doc["total"]["requests"] == 12


def test_series_beyond_the_cap_share_one(clock: FakeClock) -> None:
    live = LiveSeries(max_series=2, clock=clock)
    for name in ("a", "b", "c", "d"):
        live.on_infer(event(name))
    clock.advance(2)
    doc = live.snapshot(live.window(1, 1), limit=10)
    assert {m["model"]: m["requests"] for m in doc["models"]} == {"_other": 2, "a": 1, "b": 1}


def test_old_seconds_are_overwritten_not_counted(clock: FakeClock) -> None:
    live = LiveSeries(history_s=60, clock=clock)
    live.on_infer(event())
    clock.advance(60)  # the same ring slot, one lap later
    live.on_infer(event())
    clock.advance(1)
    doc = live.snapshot(live.window(1, 1), limit=10)
    assert doc["total"]["requests"] == 1


def test_route_counts_cover_endpoint_routes_only(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    live.on_infer(event("simple", endpoint="ab", route="a"))
    live.on_infer(event("simple", endpoint="ab", route="a"))
    live.on_infer(event("simple", endpoint="ab", route="b"))
    live.on_infer(event("simple", endpoint="ab", route="shadow"))  # shadows are not the split
    live.on_infer(event("simple"))  # called by model name
    assert live.route_counts() == {"ab": {"a": 2, "b": 1}}
    clock.advance(ui_routes.SPLIT_S + 1)
    assert live.route_counts() == {}


# ---- the page ------------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg")
    simple = simple_model(tmp_path / "simple.onnx")
    reg.push(simple, name="simple", alias="production")
    reg.push(simple, name="simple")
    linear = linear_fp32_model(tmp_path / "linear.onnx", n_features=2)
    x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    reference = {"drift_reference": reference_stats({"input": x})}
    reg.push(linear, name="linear", alias="production", metadata=reference)
    reg.push(linear, name="linear", alias="candidate", metadata=reference)
    yield reg
    reg.close()


@pytest.fixture
def app(registry: Registry, tmp_path: Path, clock: FakeClock) -> Iterator[App]:
    settings = Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1)
    built = build_app(settings, clock=clock)
    yield built
    built.close()


@pytest.fixture
def client(app: App) -> Client:
    return Client(app.rest_app())


@pytest.fixture
def page(registry: Registry, tmp_path: Path) -> Iterator[Client]:
    """Only the serving core and the dashboard (quicker to build and close than every feature)."""
    settings = Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1)
    built = build_app(settings, features=False)
    ui_wiring.install(built)
    yield Client(built.rest_app())
    built.close()


def test_the_page_is_mounted_by_the_monitoring_feature(app: App) -> None:
    paths = {(r.method, r.path) for r in app.routes}
    assert {("GET", "/ui"), ("GET", "/ui/{asset}"), ("GET", ui_routes.OVERVIEW_PATH)} <= paths
    assert isinstance(app.extras["ui_live"], LiveSeries)
    assert app.extras["ui_live"] in app.observers.observers


def test_the_page_can_be_turned_off(registry: Registry, tmp_path: Path) -> None:
    settings = Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1, ui=False)
    built = build_app(settings)
    try:
        assert not any(r.path.startswith("/ui") for r in built.routes)
        assert "ui_live" not in built.extras
    finally:
        built.close()


def test_index_names_every_asset_by_content_hash(page: Client) -> None:
    response = page.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assets = load_assets()
    refs = dict(re.findall(r'"/ui/([\w.]+)\?v=(\w+)"', response.text))
    assert set(refs) == {"app.js", "style.css", "favicon.svg"}
    assert all(assets[name].etag == tag for name, tag in refs.items())
    assert not re.search(r'"/ui/[\w.]+"', response.text)  # nothing left unversioned
    assert page.get("/ui/").text == response.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("endpoints.js", "text/javascript; charset=utf-8"),
        ("widgets.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_cached_by_version_and_revalidated(
    page: Client, name: str, content_type: str
) -> None:
    tag = load_assets()[name].etag
    versioned = page.get(f"/ui/{name}?v={tag}")
    assert versioned.status_code == 200
    assert versioned.headers["content-type"] == content_type
    assert versioned.headers["cache-control"] == ui_routes.IMMUTABLE
    assert versioned.headers["x-content-type-options"] == "nosniff"
    plain = page.get(f"/ui/{name}")
    assert plain.headers["cache-control"] == "no-cache" and plain.content == versioned.content
    again = page.get(f"/ui/{name}", headers={"if-none-match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_unknown_files_are_404(page: Client) -> None:
    assert page.get("/ui/secrets.txt").status_code == 404
    assert page.get("/ui/..%2Fapp.py").status_code == 404


def test_bad_query_parameters_name_the_field(page: Client) -> None:
    for query, field in (("minutes=0", "minutes"), ("minutes=x", "minutes"), ("step=61", "step")):
        response = page.get(f"{ui_routes.TIMESERIES_PATH}?{query}")
        assert response.status_code == 400
        assert f"'{field}'" in response.json()["error"]


# ---- the JSON API --------------------------------------------------------------------------------
def apply_endpoints(registry: Registry, now: float) -> None:
    store = EndpointStore(registry)
    store.apply(AB)
    store.apply(SCORING)
    spec = parse_spec(SCORING)
    assert spec.rollout is not None
    decision = rollout.start(spec.rollout, 2, now)
    assert save_rollout(
        registry, "scoring", decision.state, expected=None, events=decision.events, now=now
    )
    report = {"model": "linear", "version": 1, "computed_at": now, "rows": 900, "status": "alarm"}
    save_report(registry, {**report, "alarms": ["inputs:input[0]"]})


def test_overview_shows_models_endpoints_rollouts_cache_and_drift(
    app: App, client: Client, registry: Registry, clock: FakeClock
) -> None:
    apply_endpoints(registry, clock.wall())
    traffic = app.extras["traffic"]
    assert isinstance(traffic, TrafficDataPlane)
    traffic.load(EndpointStore(registry).list())  # as the endpoint watcher would
    for _ in range(6):
        assert client.post("/v2/models/ab/infer", json=SIMPLE).status_code == 200
    doc: dict[str, Any] = client.get(ui_routes.OVERVIEW_PATH).json()

    models = {m["name"]: m for m in doc["models"]}
    assert models["linear"]["aliases"] == {"candidate": 2, "production": 1}
    assert [v["version"] for v in models["simple"]["versions"]] == [2, 1]
    drift = {v["version"]: v["drift"] for v in models["linear"]["versions"]}
    assert drift[1]["status"] == "alarm" and drift[1]["alarms"] == ["inputs:input[0]"]
    assert drift[2] == {"status": "pending"}  # a reference, but no report yet
    assert models["simple"]["versions"][0]["drift"] == {"status": "none"}

    endpoints = {e["name"]: e for e in doc["endpoints"]}
    ab = endpoints["ab"]
    assert [(r["name"], r["target"], r["effective"]) for r in ab["routes"]] == [
        ("a", "simple@1", 50.0),
        ("b", "simple@2", 50.0),
    ]
    assert ab["rollout"] is None and sum(ab["observed"].values()) == 6
    scoring = endpoints["scoring"]
    assert [(r["name"], r["effective"]) for r in scoring["routes"]] == [
        ("stable", 75.0),
        ("candidate", 25.0),
    ]
    progress = scoring["rollout"]
    assert (progress["status"], progress["step"], progress["weight"]) == ("running", 0, 25.0)
    assert progress["steps"] == [25.0, 100.0] and progress["candidate_version"] == 2
    assert scoring["features"]["shadows"] == ["linear@2 (50%)"]
    assert scoring["features"]["fallback"] == ["linear@1"]

    cached = {(e["model"], e["version"]): e["state"] for e in doc["cache"]["entries"]}
    assert set(cached.values()) == {"READY"} and set(cached) <= {("simple", 1), ("simple", 2)}
    kinds = [e["kind"] for e in doc["events"]]
    assert "rollout.started" in kinds and "endpoint.applied" in kinds
    assert doc["server"]["workers"] == 1 and doc["server"]["in_flight"] == 0
    assert doc["server"]["live_workers"] == {"answered": 1, "asked": 1}


def test_the_observed_split_adds_up_the_workers_that_answer(
    app: App, registry: Registry, clock: FakeClock
) -> None:
    EndpointStore(registry).apply(AB)
    live = app.extras["ui_live"]
    assert isinstance(live, LiveSeries)
    peer = LiveSeries(clock=clock)  # another worker's
    for route in "aab":
        peer.on_infer(event("simple", endpoint="ab", route=route))
    live.on_infer(event("simple", endpoint="ab", route="b"))

    class Peers:
        async def ask(
            self, window: ui_counts.Window, want: ui_counts.Want, among: Any = None
        ) -> dict[str, ui_counts.WindowCounts | None]:
            assert want == ui_counts.Want(routes=True)
            return {"peer": peer.counts(window, want), "gone": None}  # one does not answer

    doc = asyncio.run(ui_wiring.OverviewSource(app, live, Peers()).collect())
    (ab,) = doc["endpoints"]
    assert ab["observed"] == {"a": 2, "b": 2}
    assert doc["server"]["live_workers"] == {"answered": 2, "asked": 3}


def test_a_rollout_not_yet_started_is_pending(app: App, client: Client, registry: Registry) -> None:
    EndpointStore(registry).apply(SCORING)
    (scoring,) = client.get(ui_routes.OVERVIEW_PATH).json()["endpoints"]
    assert scoring["rollout"]["status"] == "pending" and scoring["rollout"]["weight"] == 0.0
    assert [r["name"] for r in scoring["routes"]] == ["stable"]


def test_timeseries_reports_served_requests(app: App, client: Client, clock: FakeClock) -> None:
    clock.advance(5)
    for _ in range(4):
        assert client.post("/v2/models/simple/infer", json=SIMPLE).status_code == 200
    assert client.post("/v2/models/simple/infer", json={"inputs": []}).status_code == 400
    clock.advance(2)
    response = client.get(f"{ui_routes.TIMESERIES_PATH}?minutes=1&step=1&limit=5")
    assert response.headers["cache-control"] == "no-store"
    doc = response.json()
    assert doc["minutes"] == 1 and doc["step_s"] == 1
    assert doc["workers"] == {"answered": 1, "asked": 1}  # alone: no peers, no socket
    (model,) = doc["models"]
    assert (model["model"], model["requests"], model["errors"]) == ("simple", 5, 1)
    assert model["error_rate"][-2] == 0.2 and model["rps"][-2] == 5.0


# ---- deploy/: the Grafana dashboard and the Prometheus rules -----------------------------------
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_deploy_files_use_only_exported_metrics(client: Client) -> None:
    exposition = client.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (modelyard_\w+) ", exposition, flags=re.MULTILINE))
    drift_series = CollectorRegistry()
    DriftMetrics(drift_series)  # registered once the server runs
    exported |= {family.name for family in drift_series.collect()}
    dashboard = json.loads((DEPLOY / "grafana" / "modelyard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "modelyard-alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"ModelYardP99OverSLO", "ModelYardHighErrorRate", "ModelYardHighFallbackRate"} <= alerts
    assert "ModelYardDriftAlarm" in alerts
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {
        re.sub(r"_(bucket|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b(modelyard_\w+)", expr)
    }
    exported_bases = {re.sub(r"_total$", "", name) for name in exported}
    assert used and used <= exported_bases, used - exported_bases
