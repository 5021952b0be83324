"""A registry (SQLite, fake clock) with model ``fraud`` v1 (production), v2 (candidate), v3 and
endpoint ``fraud-ep`` rolling out the candidate; helpers write stats rows directly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelyard.control.controller import Controller, WindowReport
from modelyard.control.store import list_events, load_rollout
from modelyard.core.clock import FakeClock
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.traffic.rollout import CANDIDATE_ROUTE
from modelyard.traffic.stats import RouteStats, StatsRow
from modelyard.traffic.stats_store import read_rows, write_rows
from modelyard.types import Datatype
from tests.testmodels import identity_model

WALL0 = 1_700_000_000.0
INTERVAL = 10.0
HOLD = 30.0
STALL_S = 0.2


def spec(**rollout: Any) -> dict[str, Any]:
    return {
        "name": "fraud-ep",
        "routes": [{"name": "stable", "model": "fraud", "version": "production", "weight": 100}],
        "fallback": {"chain": [{"kind": "model", "model": "fraud", "version": "production"}]},
        "rollout": {
            "candidate": {"model": "fraud", "version": "candidate"},
            "steps": [{"weight": w, "hold_s": HOLD} for w in (20, 50, 80, 100)],
            "gates": {"max_error_rate_delta": 0.01, "max_p99_ratio": 1.5, "min_requests": 100},
            **rollout,
        },
    }


@dataclass
class Env:
    registry: Registry
    clock: FakeClock
    controller: Controller
    endpoints: EndpointStore

    def stats(
        self,
        route: str,
        version: int,
        *,
        requests: int,
        errors: int = 0,
        code: str = "INTERNAL",
        latency_s: float = 0.010,
        stalls: int = 0,
        model: str = "fraud",
        replica: str = "r1",
        at: float | None = None,
    ) -> None:
        """One interval's row (the current interval unless ``at``); ``errors`` requests failed
        with ``code``; ``stalls`` of the successful ones took 0.2 s instead of ``latency_s``."""
        s = RouteStats()
        for i in range(requests):
            stalled = i >= requests - stalls
            s.record(code if i < errors else "OK", STALL_S if stalled else latency_s)
        start = (at if at is not None else self.clock.wall()) // INTERVAL * INTERVAL
        write_rows(
            self.registry, [StatsRow(replica, start, "fraud-ep", route, model, version, s)], 10
        )

    def healthy_interval(self, candidate: int = 2, **cand: Any) -> None:
        self.stats(CANDIDATE_ROUTE, candidate, **{"requests": 200, **cand})
        self.stats("stable", 1, requests=400, replica="r1")
        self.stats("stable", 1, requests=400, replica="r2")

    def state(self) -> Any:
        stored = load_rollout(self.registry, "fraud-ep")
        assert stored is not None
        return stored.state

    def kinds(self) -> list[str]:
        return [e.kind for e in list_events(self.registry, "fraud-ep")]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = FakeClock(wall_start=WALL0)
    registry = Registry(tmp_path / "reg", clock=clock)
    model = identity_model(Datatype.FP32, tmp_path / "m.onnx")
    for _ in range(3):
        registry.push(model, name="fraud")
    registry.set_alias("fraud", "production", 1)
    registry.set_alias("fraud", "candidate", 2)
    endpoints = EndpointStore(registry)
    endpoints.apply(spec())
    controller = Controller(registry, holder="c1", interval_s=1, stats_interval_s=INTERVAL)
    yield Env(registry, clock, controller, endpoints)
    registry.close()


Read = tuple[float, float | None]


@pytest.fixture
def stats_reads(monkeypatch: pytest.MonkeyPatch) -> list[Read]:
    """The ``(since, until)`` of every read of stats rows the controller makes."""
    from modelyard.control import controller

    reads: list[Read] = []

    def counted(
        registry: Registry, endpoint: str, since: float, until: float | None = None
    ) -> list[StatsRow]:
        reads.append((since, until))
        return read_rows(registry, endpoint, since, until)

    monkeypatch.setattr(controller, "read_rows", counted)
    return reads


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[WindowReport]:
    """Every window the controller judges, in order."""
    from modelyard.control import controller

    reports: list[WindowReport] = []
    real = controller.evaluate_window

    def kept(*args: Any) -> WindowReport:
        reports.append(real(*args))
        return reports[-1]

    monkeypatch.setattr(controller, "evaluate_window", kept)
    return reports
