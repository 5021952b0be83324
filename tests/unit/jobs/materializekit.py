"""Shared by the materialised-prediction tests (SQLite here, PostgreSQL in integration): a
registry with model ``linear`` (4 features summed), the job, and an endpoint in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.app import App, build_app
from modelyard.core.observer import InferEvent, Observer
from modelyard.jobs.materialize import MaterializeJob, MaterializeResult, materialize
from modelyard.jobs.scoring import LocalScorer
from modelyard.registry.endpoints import EndpointRecord
from modelyard.registry.registry import Registry
from modelyard.registry.store import Store
from modelyard.settings import Settings, load_settings
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.materialized import MaterializedTables
from modelyard.traffic.spec import parse_spec
from modelyard.types import Array, InferRequest, InferResponse, RequestContext
from tests.testmodels import linear_fp32_model

FEATURES = 4


def features(i: int) -> list[float]:
    return [float(i) + j / 10 for j in range(FEATURES)]


def rows(keys: range) -> list[dict[str, Any]]:
    """JSON rows: ``id`` and features f0..f3."""
    return [{"id": i, **{f"f{j}": v for j, v in enumerate(features(i))}} for i in keys]


def push_linear(registry: Registry, tmp: Path) -> int:
    """A new version of ``linear`` under alias production; returns its number."""
    path = linear_fp32_model(tmp / "linear.onnx", FEATURES)
    return registry.push(path, name="linear", alias="production").version


def run_job(settings: Settings, store: Store, table: str, keys: range) -> MaterializeResult:
    import orjson

    job = MaterializeJob(input=orjson.dumps(rows(keys)).decode(), table=table)
    scorer = LocalScorer(settings, "linear", "production")
    try:
        return materialize(job, scorer, store)
    finally:
        scorer.close()


class Calls(Observer):
    def __init__(self) -> None:
        self.models: list[str] = []

    def on_infer(self, event: InferEvent) -> None:
        self.models.append(f"{event.model}:{event.version}")


class Endpoint:
    """Endpoint ``scores`` with one ``materialized`` route to ``linear@production``."""

    def __init__(self, app: App, materialized: dict[str, Any]) -> None:
        self.app = app
        self.calls = Calls()
        app.observers.add(self.calls)
        self.tables = MaterializedTables(app.registry.store)

        async def resolve(model: str, ref: str | None) -> str:
            return str((await app.serving.resolver.resolve(model, ref)).version)

        self.plane = TrafficDataPlane(
            app.serving, resolve=resolve, clock=app.clock, tables=self.tables
        )
        route = {"name": "main", "model": "linear", "version": "production", "weight": 100}
        spec = parse_spec({"name": "scores", "routes": [{**route, "materialized": materialized}]})
        self.plane.load([EndpointRecord("scores", spec, 1, 0.0, 0.0)])

    def infer(self, x: Array, **parameters: Any) -> InferResponse:
        self.app.serving.resolver.invalidate()  # see alias moves at once
        request = InferRequest(inputs={"input": x}, parameters=parameters)
        return asyncio.run(self.plane.infer("scores", None, request, RequestContext()))


def batch(*keys: int) -> Array:
    return np.array([features(k) for k in keys], dtype=np.float32)


@contextmanager
def serving(settings: Settings, materialized: dict[str, Any]) -> Iterator[Endpoint]:
    app = build_app(settings, features=False)
    endpoint = Endpoint(app, materialized)
    try:
        yield endpoint
    finally:
        endpoint.tables.close()
        app.close()


def settings_for(registry: str, **extra: Any) -> Settings:
    return load_settings(registry=registry, **extra)
