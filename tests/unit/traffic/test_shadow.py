"""Shadows: output comparison (pure, table-driven) and the dispatcher (in-process, fake clock)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import Observer
from modelyard.errors import InferenceError
from modelyard.traffic.shadow import (
    Comparison,
    ProcessLoad,
    ShadowRunner,
    compare_outputs,
)
from modelyard.traffic.shadow_report import summarize_shadows
from modelyard.traffic.spec import Compare, EndpointSpec, parse_spec
from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, StatsCollector, StatsRow
from modelyard.types import Array, InferRequest, InferResponse, RequestContext

F32 = np.float32


# ---- compare_outputs -----------------------------------------------------------------------------
def arr(*rows: Any, dtype: Any = F32) -> Array:
    return np.asarray(rows, dtype=dtype)


@pytest.mark.parametrize(
    ("case", "compare", "primary", "shadow", "expected"),
    [
        ("same class", Compare(kind="argmax"), arr([0.1, 0.9]), arr([0.4, 0.6]), (1, 1)),
        ("other class", Compare(kind="argmax"), arr([0.1, 0.9]), arr([0.6, 0.4]), (1, 0)),
        (
            "per row",
            Compare(kind="argmax"),
            arr([0.1, 0.9], [0.8, 0.2], [0.3, 0.7]),
            arr([0.2, 0.8], [0.1, 0.9], [0.3, 0.7]),
            (3, 2),
        ),
        ("within atol", Compare(atol=0.01), arr([1.0], [2.0]), arr([1.005], [2.5]), (2, 1)),
        ("rtol", Compare(atol=0, rtol=0.1), arr([100.0]), arr([109.0]), (1, 1)),
        ("nan equal", Compare(), arr([np.nan]), arr([np.nan]), (1, 1)),
        ("exact", Compare(kind="exact"), arr([1, 2], [3, 4]), arr([1, 2], [3, 5]), (2, 1)),
        ("other shape", Compare(), arr([1.0], [2.0]), arr([1.0]), (2, 0)),
        (
            "bytes compare exactly",
            Compare(kind="tolerance"),
            arr([b"a"], [b"b"], dtype=object),
            arr([b"a"], [b"c"], dtype=object),
            (2, 1),
        ),
        (
            "argmax on labels",
            Compare(kind="argmax"),
            arr(1, 2, dtype=object),
            arr(1, 3, dtype=object),
            (2, 1),
        ),
        ("scalar", Compare(), np.float32(3.0), np.float32(3.0), (1, 1)),
        ("labels, one per row", Compare(kind="argmax"), arr(1, 2), arr(1, 3), (2, 1)),
        ("2-d, no classes", Compare(kind="argmax"), np.zeros((2, 0)), np.zeros((2, 0)), (2, 2)),
        ("3-d argmax", Compare(kind="argmax"), np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), (2, 2)),
        ("empty", Compare(kind="argmax"), np.zeros((0, 2)), np.zeros((0, 2)), (0, 0)),
    ],
)
def test_compare_table(
    case: str, compare: Compare, primary: Array, shadow: Array, expected: tuple[int, int]
) -> None:
    got = compare_outputs(compare, {"y": primary}, {"y": shadow})
    assert got == Comparison(*expected), case


def test_compare_picks_the_named_or_first_output() -> None:
    p = {"a": arr([1.0]), "b": arr([5.0])}
    s = {"a": arr([1.0]), "b": arr([6.0])}
    assert compare_outputs(Compare(), p, s) == Comparison(1, 1)
    assert compare_outputs(Compare(output="b"), p, s) == Comparison(1, 0)
    assert compare_outputs(Compare(output="c"), p, s) == Comparison(1, 0)
    assert compare_outputs(Compare(output="a"), p, {"b": arr([1.0])}) == Comparison(1, 0)
    assert compare_outputs(Compare(), {}, s) == Comparison(1, 0)


# ---- the dispatcher ------------------------------------------------------------------------------
Behaviour = Callable[[InferRequest], Awaitable[dict[str, Array]]]


class Inner(DataPlane):
    """Shadow models by name: y = x, or a scripted behaviour; counts calls."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.behaviours: dict[str, Behaviour] = {}
        self.calls: list[tuple[str, str | None, RequestContext]] = []
        self.started = asyncio.Event()

    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.calls.append((name, version, ctx))
        self.started.set()
        behaviour = self.behaviours.get(name)
        outputs = {"y": request.inputs["x"]} if behaviour is None else await behaviour(request)
        return InferResponse(name, "4", outputs)


def endpoint(fraction: float = 1.0, kind: str = "argmax", shadows: int = 1) -> EndpointSpec:
    return parse_spec(
        {
            "name": "fraud",
            "routes": [{"name": "a", "model": "fraud", "weight": 100}],
            "shadows": [
                {"model": f"shadow{i}", "fraction": fraction, "compare": {"kind": kind}}
                for i in range(shadows)
            ],
        }
    )


def request(*values: float) -> InferRequest:
    return InferRequest(inputs={"x": np.asarray([[v, -v] for v in values], dtype=F32)})


def response(req: InferRequest) -> InferResponse:
    return InferResponse("fraud", "3", {"y": req.inputs["x"]})


class Outcomes(Observer):
    """Records the shadow outcomes the runner reports (the metrics observer's hook)."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str, str]] = Counter()

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        self.seen[(endpoint, shadow, outcome)] += 1


class Harness:
    def __init__(self, max_concurrency: int = 8, rnd: Callable[[], float] | None = None) -> None:
        self.clock = FakeClock(wall_start=1_700_000_000.0)
        self.inner = Inner(self.clock)
        self.stats = StatsCollector(interval_s=10, replica="r", clock=self.clock)
        self.outcomes = Outcomes()
        self.runner = ShadowRunner(
            self.inner,
            self.stats,
            observer=self.outcomes,
            max_concurrency=max_concurrency,
            clock=self.clock,
            rnd=rnd or (lambda: 0.0),
            resolve_cached=lambda model, ref: 4,
            load=ProcessLoad(clock=self.clock, cpu=lambda: 0.0, cpus=1),
        )

    def shadow_rows(self) -> dict[tuple[str, int], RouteStats]:
        return {
            (r.model, r.version): r.stats
            for r in self.stats.take(everything=True)
            if r.route == SHADOW_ROUTE
        }


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def test_client_never_waits_for_a_shadow() -> None:
    h = Harness()
    release = asyncio.Event()

    async def stuck(req: InferRequest) -> dict[str, Array]:
        await release.wait()
        return {"y": req.inputs["x"]}

    h.inner.behaviours["shadow0"] = stuck

    async def scenario() -> None:
        req = request(1.0)
        primary: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(), req, primary, RequestContext(request_id="r1"))
        assert h.inner.calls == []  # nothing starts before the primary has answered
        primary.set_result(response(req))
        assert (await primary).model_version == "3"  # the client has its answer ...
        await h.inner.started.wait()
        assert h.runner.in_flight == 1  # ... while the shadow still runs
        release.set()
        await h.runner.drain()
        assert h.runner.in_flight == 0

    run(scenario())
    ((name, version, ctx),) = h.inner.calls
    assert (name, version) == ("shadow0", None)
    assert (ctx.route, ctx.endpoint, ctx.request_id) == (SHADOW_ROUTE, "fraud", "r1-shadow")
    shadow = h.shadow_rows()[("shadow0", 4)].shadow
    assert shadow is not None and (shadow.compared, shadow.agreed) == (1, 1)


def test_latency_delta_is_shadow_minus_primary() -> None:
    h = Harness()

    async def slow(req: InferRequest) -> dict[str, Array]:
        h.clock.advance(0.030)
        return {"y": req.inputs["x"]}

    h.inner.behaviours["shadow0"] = slow

    async def scenario() -> None:
        req = request(1.0)
        primary: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(), req, primary, RequestContext())
        h.clock.advance(0.010)
        primary.set_result(response(req))
        await primary
        await h.runner.drain()

    run(scenario())
    shadow = h.shadow_rows()[("shadow0", 4)].shadow
    assert shadow is not None and shadow.mean_latency_delta_s == pytest.approx(0.020)


def test_known_ten_percent_disagreement_reports_ninety_percent() -> None:
    """The shadow picks the other class for every input whose id % 10 == 0."""
    h = Harness()

    async def disagree_on_tenth(req: InferRequest) -> dict[str, Array]:
        x = req.inputs["x"]
        flip = (x[:, :1].astype(int) % 10) == 0
        return {"y": np.where(flip, -x, x)}

    h.inner.behaviours["shadow0"] = disagree_on_tenth

    async def scenario() -> None:
        for i in range(1, 1001):
            req = request(float(i))
            primary: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
            h.runner.dispatch(endpoint(), req, primary, RequestContext())
            primary.set_result(response(req))
            await primary
            await h.runner.drain()

    run(scenario())
    shadow = h.shadow_rows()[("shadow0", 4)].shadow
    assert shadow is not None
    assert shadow.compared == 1000
    assert shadow.agreement == pytest.approx(0.90, abs=0.02)
    assert h.outcomes.seen == {
        ("fraud", "shadow0@4", "match"): 900,
        ("fraud", "shadow0@4", "mismatch"): 100,
    }


def test_busy_box_drops_and_counts_never_queues() -> None:
    h = Harness(max_concurrency=2)

    async def scenario() -> list[asyncio.Future[InferResponse]]:
        primaries = []
        for i in range(5):
            fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
            h.runner.dispatch(endpoint(), request(float(i)), fut, RequestContext())
            primaries.append(fut)
        assert h.runner.in_flight == 2
        assert h.runner.dropped == 3
        for i, fut in enumerate(primaries):
            fut.set_result(response(request(float(i))))
        await h.runner.drain()
        return primaries

    run(scenario())
    assert len(h.inner.calls) == 2
    shadow = h.shadow_rows()[("shadow0", 4)].shadow
    assert shadow is not None and (shadow.dropped, shadow.compared) == (3, 2)
    assert h.outcomes.seen == {
        ("fraud", "shadow0@4", "dropped"): 3,
        ("fraud", "shadow0@4", "match"): 2,
    }


def test_zero_concurrency_turns_shadows_off() -> None:
    h = Harness(max_concurrency=0)

    async def scenario() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(shadows=2), request(1.0), fut, RequestContext())
        fut.set_result(response(request(1.0)))
        await h.runner.drain()

    run(scenario())
    assert h.inner.calls == []
    assert h.runner.dropped == 2


@pytest.mark.parametrize(
    ("fraction", "draws", "sent"),
    [(0.25, [0.1, 0.3, 0.24, 0.25, 0.9], 2), (1.0, [0.99, 0.99], 2), (0.5, [0.6, 0.7], 0)],
)
def test_fraction_sampling(fraction: float, draws: list[float], sent: int) -> None:
    it: Iterator[float] = iter(draws)
    h = Harness(rnd=lambda: next(it))

    async def scenario() -> None:
        for i in range(len(draws)):
            fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
            h.runner.dispatch(endpoint(fraction), request(float(i)), fut, RequestContext())
            fut.set_result(response(request(float(i))))
            await h.runner.drain()

    run(scenario())
    assert len(h.inner.calls) == sent


@pytest.mark.parametrize("how", ["error", "cancelled"])
def test_failed_primary_is_counted_not_compared(how: str) -> None:
    h = Harness()

    async def scenario() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(), request(1.0), fut, RequestContext())
        if how == "error":
            fut.set_exception(InferenceError("boom"))
            with pytest.raises(InferenceError):
                await fut  # the traffic layer reports the primary's failure
        else:
            fut.cancel()
        await h.runner.drain()

    run(scenario())
    assert len(h.inner.calls) == 1  # the shadow still runs: its own error rate matters
    shadow = h.shadow_rows()[("shadow0", 4)].shadow
    assert shadow is not None and (shadow.primary_failed, shadow.compared) == (1, 0)


@pytest.mark.parametrize("exc", [InferenceError("bad"), RuntimeError("bug")])
def test_failing_shadow_is_not_compared_and_never_raises(exc: Exception) -> None:
    h = Harness()

    async def fail(req: InferRequest) -> dict[str, Array]:
        raise exc

    h.inner.behaviours["shadow0"] = fail

    async def scenario() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(), request(1.0), fut, RequestContext())
        fut.set_result(response(request(1.0)))
        await fut
        await h.runner.drain()

    run(scenario())
    assert ("shadow0", 4) not in h.shadow_rows()
    assert h.outcomes.seen == {("fraud", "shadow0@4", "error"): 1}


def test_no_shadows_no_work() -> None:
    h = Harness()
    spec = endpoint().model_copy(update={"shadows": ()})

    async def scenario() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(spec, request(1.0), fut, RequestContext())
        assert h.runner.in_flight == 0
        fut.set_result(response(request(1.0)))
        await h.runner.drain()

    run(scenario())
    assert h.inner.calls == []


# ---- report --------------------------------------------------------------------------------------
def shadow_row(start: float, version: int, **counts: int) -> StatsRow:
    stats = RouteStats(requests=counts.pop("requests", 0))
    if counts.get("errors"):
        stats.errors["INTERNAL"] = counts.pop("errors")
    shadow = stats.shadow_stats()
    for key, value in counts.items():
        setattr(shadow, key, value)
    return StatsRow("r", start, "fraud", SHADOW_ROUTE, "fraud", version, stats)


def test_summarize_shadows() -> None:
    rows = [
        shadow_row(0, 4, requests=10, errors=1, compared=9, agreed=8),
        shadow_row(10, 4, requests=10, compared=10, agreed=10),
        shadow_row(10, 0, dropped=5),  # drops before the version was known
        StatsRow("r", 0, "fraud", "a", "fraud", 3, RouteStats(requests=100)),
    ]
    (total,) = summarize_shadows(rows)
    assert (total.version, total.requests, total.errors, total.dropped) == (4, 20, 1, 5)
    assert total.agreement == pytest.approx(18 / 19)
    assert total.error_rate == pytest.approx(0.05)
    per = summarize_shadows(rows, per_interval=True)
    assert [(s.interval_start, s.compared, s.dropped) for s in per] == [(0, 9, 0), (10, 10, 5)]
    assert per[0].to_json()["agreement"] == pytest.approx(8 / 9)


def test_a_primary_answered_by_the_shadow_version_is_not_shadowed() -> None:
    """During a rollout the candidate may also be a shadow: comparing it with itself would
    only inflate its agreement."""
    h = Harness()  # the shadow resolves to version 4

    async def scenario() -> None:
        for answered_by in ("shadow0:4", "shadow0:3", "other:4"):
            req = request(1.0)
            fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
            h.runner.dispatch(endpoint(), req, fut, RequestContext())
            answer = response(req)
            answer.parameters["answered_by"] = answered_by
            fut.set_result(answer)
            await h.runner.drain()

    run(scenario())
    assert len(h.inner.calls) == 2
    assert h.runner.in_flight == 0


def test_lagging_event_loop_drops_and_counts() -> None:
    """When the loop gets to a shadow later than max_loop_lag_s after its primary answered,
    the box is busy: the shadow is dropped (counted), its slot freed."""
    h = Harness()
    h.runner.max_loop_lag_s = -1.0  # any lag at all is too much

    async def scenario() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(shadows=2), request(1.0), fut, RequestContext())
        assert h.runner.in_flight == 2
        fut.set_result(response(request(1.0)))
        await h.runner.drain()

    run(scenario())
    assert h.inner.calls == []
    assert (h.runner.dropped, h.runner.in_flight) == (2, 0)
    rows = h.shadow_rows()
    assert sum(s.shadow.dropped for s in rows.values() if s.shadow) == 2


def test_process_load_measures_the_busy_share_of_each_window() -> None:
    clock = FakeClock()
    cpu = [0.0]
    load = ProcessLoad(window_s=0.1, clock=clock, cpu=lambda: cpu[0], cpus=1)
    assert load.utilization() == 0.0
    cpu[0] += 0.08
    clock.advance(0.04)
    assert load.utilization() == 0.0  # the window is not over: the last value stands
    clock.advance(0.07)
    assert load.utilization() == pytest.approx(0.08 / 0.11)
    clock.advance(0.2)
    assert load.utilization() == pytest.approx(0.0)


def test_busy_process_sends_no_shadows() -> None:
    """Shadows only take idle capacity: while the process is busy, they are dropped."""
    h = Harness()
    cpu = [0.0]
    h.runner.load = ProcessLoad(window_s=0.1, clock=h.clock, cpu=lambda: cpu[0], cpus=2)

    async def one() -> None:
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        h.runner.dispatch(endpoint(), request(1.0), fut, RequestContext())
        fut.set_result(response(request(1.0)))
        await h.runner.drain()

    async def scenario() -> None:
        await one()  # idle: sent
        cpu[0] += 0.18
        h.clock.advance(0.1)  # 90 % of two CPUs
        await one()  # dropped
        h.clock.advance(0.1)  # idle again
        await one()  # sent

    run(scenario())
    assert len(h.inner.calls) == 2
    assert h.runner.dropped == 1
