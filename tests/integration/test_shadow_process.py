"""Shadows in the helper process (``shadow_isolation: process``): a real child process, a real
registry on disk, the rollout test's Scorer model (imported by name in the child).

The runner is driven directly (no HTTP server): primaries are futures this test resolves, so
what is asserted is the helper's work - comparison, counts, drops when it dies, restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.observer import Observer, Observers
from modelyard.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic.shadow import ShadowRunner
from modelyard.traffic.shadow_process import ProcessShadows
from modelyard.traffic.spec import parse_spec
from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, StatsCollector
from modelyard.types import InferRequest, InferResponse, RequestContext
from tests.rolloutmodels import Scorer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    registry_dir = tmp_path / "registry"
    with Registry(registry_dir) as reg:
        reg.push(Scorer(), name="base", alias="production")
        reg.push(Scorer(flip_mod=10), name="base", alias="candidate")
        reg.push(Scorer(error_mod=10), name="broken", alias="production")
    yield Settings(registry=str(registry_dir), allow_pickle=False)


class Harness:
    def __init__(self, settings: Settings, shadow_model: str = "base") -> None:
        self.clock = FakeClock(wall_start=1_700_000_000.0)
        self.stats = StatsCollector(interval_s=10, replica="r", clock=self.clock)
        self.outcomes: Counter[str] = Counter()
        self.observers = Observers([self.stats, _Outcomes(self.outcomes)])
        self.executor = ProcessShadows(
            settings, self.stats, self.observers, clock=self.clock, restart_backoff_s=30
        )
        self.runner = ShadowRunner(
            _NoInner(),  # type: ignore[arg-type]
            self.stats,
            max_concurrency=256,
            clock=self.clock,
            executor=self.executor,
        )
        self.spec = parse_spec(
            {
                "name": "ep",
                "routes": [
                    {"name": "main", "model": "base", "version": "production", "weight": 100}
                ],
                "shadows": [
                    {
                        "model": shadow_model,
                        "version": "candidate" if shadow_model == "base" else "production",
                        "compare": {"kind": "argmax"},
                    }
                ],
            }
        )

    async def send(self, values: list[float]) -> None:
        """One request per value; the primary answers like production (class of sign(x))."""
        loop = asyncio.get_running_loop()
        for i, v in enumerate(values):
            request = InferRequest(inputs={"x": np.asarray([[v]], dtype=np.float32)})
            primary: asyncio.Future[InferResponse] = loop.create_future()
            self.runner.dispatch(self.spec, request, primary, RequestContext(request_id=f"r{i}"))
            p1 = np.float32(0.9 if v >= 0 else 0.1)
            probs = np.asarray([[1 - p1, p1]], dtype=np.float32)
            primary.set_result(InferResponse("base", "1", {"probabilities": probs}, parameters={}))
        await asyncio.sleep(0)  # the runner starts shadows one loop turn after the primary
        await asyncio.wait_for(self.runner.drain(), timeout=60)

    def shadow_stats(self) -> RouteStats:
        rows = [r for r in self.stats.take(everything=True) if r.route == SHADOW_ROUTE]
        total = RouteStats()
        for row in rows:
            total.merge(row.stats)
        return total


class _Outcomes(Observer):
    def __init__(self, seen: Counter[str]) -> None:
        self.seen = seen

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        self.seen[outcome] += 1


class _NoInner:
    """The serving core of the serving process: the helper must not call it."""

    async def infer(self, *args: object) -> InferResponse:
        raise AssertionError("a process-isolated shadow ran in the serving process")


def test_the_helper_compares_a_known_ten_percent_disagreement(settings: Settings) -> None:
    h = Harness(settings)

    async def main() -> None:
        try:
            await h.send([float(i % 50 + 1) for i in range(200)])
        finally:
            h.executor.close()

    asyncio.run(main())
    stats = h.shadow_stats()
    shadow = stats.shadow_stats()
    assert shadow.compared == 200
    assert shadow.agreed == 180  # |x| % 10 == 3 flips the class: 20 of 200 inputs
    assert stats.requests == 200  # counted through the observers, route "shadow"
    assert h.executor.starts == 1
    assert h.outcomes == {"match": 180, "mismatch": 20}


def test_shadow_errors_are_counted_not_compared(settings: Settings) -> None:
    h = Harness(settings, shadow_model="broken")

    async def main() -> None:
        try:
            await h.send([float(i + 1) for i in range(20)])  # x = 7 and 17 fail
        finally:
            h.executor.close()

    asyncio.run(main())
    stats = h.shadow_stats()
    assert stats.requests == 20
    assert sum(stats.errors.values()) == 2
    assert stats.shadow_stats().compared == 18
    assert h.outcomes == {"match": 18, "error": 2}


def test_a_dead_helper_drops_in_flight_shadows_and_restarts_after_the_backoff(
    settings: Settings,
) -> None:
    h = Harness(settings)

    async def main() -> None:
        try:
            await h.send([1.0, 2.0])  # helper up, model loaded
            pid = h.executor.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await h.send([4.0, 5.0])  # in flight when it died, or refused while backing off
            assert h.executor.starts == 1
            h.clock.advance(31)
            await h.send([6.0])
            assert h.executor.starts == 2
        finally:
            h.executor.close()

    asyncio.run(main())
    shadow = h.shadow_stats().shadow_stats()
    assert shadow.compared == 3
    assert shadow.dropped == 2
