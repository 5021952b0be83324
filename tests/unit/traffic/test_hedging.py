"""Hedging: the pure policy (delay, p95, token budget) and hedged calls through the dataplane."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from modelyard.core.observer import Observer
from modelyard.errors import InferenceError
from modelyard.traffic.calls import run_hedged
from modelyard.traffic.hedging import (
    MIN_SAMPLES,
    HedgeBudget,
    HedgeLimiter,
    LatencyWindow,
    hedge_delay,
    percentile,
)
from modelyard.traffic.spec import Hedging
from modelyard.types import Array, InferRequest
from tests.unit.traffic.fakes import FakeInner, infer, spec, traffic, x


@pytest.mark.parametrize(
    ("hedging", "p95", "expected"),
    [
        (None, 0.1, None),
        (Hedging(delay_ms=30), None, 0.030),
        (Hedging(delay_ms=30), 0.5, 0.030),  # a fixed delay wins over the p95
        (Hedging(), 0.012, 0.012),
        (Hedging(), None, None),  # p95 not known yet: do not hedge
        (Hedging(), math.nan, None),
    ],
)
def test_hedge_delay(hedging: Hedging | None, p95: float | None, expected: float | None) -> None:
    got = hedge_delay(hedging, p95)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("samples", "q", "expected"),
    [
        ([], 0.95, math.nan),
        ([5.0], 0.95, 5.0),
        (list(range(1, 101)), 0.95, 95),
        (list(range(1, 101)), 0.5, 50),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_nearest_rank(samples: list[float], q: float, expected: float) -> None:
    got = percentile(samples, q)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize(
    ("tokens", "ok", "left"),
    [(0.0, False, 0.0), (0.99, False, 0.99), (1.0, True, 0.0), (3.5, True, 2.5)],
)
def test_budget_spend(tokens: float, ok: bool, left: float) -> None:
    budget, spent = HedgeBudget(fraction=0.05, capacity=5.0, tokens=tokens).spend()
    assert spent is ok and budget.tokens == pytest.approx(left)


def test_budget_earns_a_fraction_per_request_up_to_capacity() -> None:
    budget = HedgeBudget(fraction=0.25, capacity=1.0)
    for _ in range(10):
        budget = budget.earn()
    assert budget.tokens == 1.0


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2])
def test_hedges_never_exceed_the_fraction_even_when_every_request_wants_one(
    fraction: float,
) -> None:
    limiter = HedgeLimiter(Hedging(max_fraction=fraction))
    for _ in range(10_000):
        limiter.on_request()
        limiter.try_hedge()
    assert limiter.hedged <= fraction * limiter.requests
    assert limiter.hedged >= fraction * limiter.requests - 1  # and the budget is usable


def test_a_saved_up_burst_is_bounded_by_the_capacity() -> None:
    limiter = HedgeLimiter(Hedging(max_fraction=0.05))
    for _ in range(1000):
        limiter.on_request()  # a long healthy stretch
    bursts = sum(limiter.try_hedge() for _ in range(100))
    assert bursts == 5  # capacity = 100 * 5 % tokens


def test_latency_window_p95_appears_after_min_samples() -> None:
    window = LatencyWindow()
    for i in range(MIN_SAMPLES - 1):
        window.add(0.001 * (i + 1))
    assert window.p95() is None
    window.add(0.020)
    assert window.p95() == pytest.approx(0.019)


def test_latency_window_forgets_old_samples() -> None:
    window = LatencyWindow(size=32)
    for _ in range(32):
        window.add(1.0)
    for _ in range(64):  # the p95 is refreshed every few samples, not on each
        window.add(0.010)
    assert window.p95() == pytest.approx(0.010)


# ---- run_hedged ---------------------------------------------------------------------------------
def test_run_hedged_second_copy_wins_and_the_first_is_cancelled() -> None:
    async def main() -> tuple[str, list[str]]:
        gate = asyncio.Event()
        log: list[str] = []
        copies = iter(["slow", "fast"])

        async def call() -> str:
            name = next(copies)
            try:
                if name == "slow":
                    await gate.wait()
                return name
            except asyncio.CancelledError:
                log.append(f"cancelled {name}")
                raise

        result = await run_hedged(call, 0.001, lambda: True)
        await asyncio.sleep(0)  # let the cancellation land
        return result, log

    assert asyncio.run(main()) == ("fast", ["cancelled slow"])


def test_run_hedged_without_budget_waits_for_the_first() -> None:
    async def main() -> tuple[str, int]:
        calls = 0

        async def call() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.005)  # slower than the hedge delay: the scenario itself
            return "only"

        return await run_hedged(call, 0.001, lambda: False), calls

    assert asyncio.run(main()) == ("only", 1)


def test_run_hedged_a_failing_copy_does_not_win() -> None:
    async def main() -> str:
        gate = asyncio.Event()
        copies = iter(["slow", "broken"])

        async def call() -> str:
            name = next(copies)
            if name == "broken":
                gate.set()
                raise InferenceError("copy failed")
            await gate.wait()
            return name

        return await run_hedged(call, 0.001, lambda: True)

    assert asyncio.run(main()) == "slow"


def test_run_hedged_both_failing_raises_the_original_copys_failure() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        copies = iter(["one", "two"])

        async def call() -> str:
            name = next(copies)
            if name == "one":
                await gate.wait()
                raise InferenceError("first failed")
            gate.set()
            await asyncio.sleep(0)
            raise InferenceError("second failed")

        await run_hedged(call, 0.001, lambda: True)

    with pytest.raises(InferenceError, match="first failed"):
        asyncio.run(main())


def test_run_hedged_fast_first_answer_never_hedges() -> None:
    async def main() -> int:
        calls = 0

        async def call() -> int:
            nonlocal calls
            calls += 1
            return calls

        return await run_hedged(call, 10.0, lambda: True)

    assert asyncio.run(main()) == 1


# ---- through the dataplane ----------------------------------------------------------------------
def test_endpoint_hedges_a_stalled_request_within_its_budget() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    gate = asyncio.Event()
    stall_next = [False]

    async def sometimes_stalls(request: InferRequest) -> dict[str, Array]:
        if stall_next[0]:
            stall_next[0] = False
            await gate.wait()  # never released: only a hedge can answer
        return {"y": np.asarray(request.inputs["x"]) * 2}

    inner.behaviours["a"] = sometimes_stalls
    dp = traffic(inner, spec(hedging={"delay_ms": 1, "max_fraction": 0.5}))
    infer(dp)  # earns half a token: not enough to hedge yet, and does not stall
    stall_next[0] = True
    response = infer(dp, inputs=x(4.0))  # stalls; the second token is there: hedged
    assert float(response.outputs["y"][0, 0]) == 8.0
    assert inner.cancelled == ["a"]
    assert len(inner.calls) == 3
    limiter = dp.endpoint("ep").hedge  # type: ignore[union-attr]
    assert limiter is not None and (limiter.hedged, limiter.requests) == (1, 2)


def test_endpoint_learns_its_p95_before_hedging_on_it() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    dp = traffic(inner, spec(hedging={"max_fraction": 1.0}))
    for _ in range(MIN_SAMPLES):
        infer(dp)
    window = dp.endpoint("ep").window("a", None)  # type: ignore[union-attr]
    assert window.p95() is not None  # FakeClock: every latency is 0.0


class HedgeEvents(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_hedge(self, endpoint: str, outcome: str) -> None:
        self.events.append((endpoint, outcome))


def test_endpoint_reports_hedges_sent_and_refused_by_the_cap() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    gate = asyncio.Event()
    stalls = [True, True, False]  # 1st: no token yet -> waits; 2nd: a whole token -> hedged

    async def stalls_as_scripted(request: InferRequest) -> dict[str, Array]:
        if stalls and stalls.pop(0):
            if len(stalls) == 2:  # the first stall ends by itself once the delay has passed
                await asyncio.sleep(0.01)
            else:
                await gate.wait()  # never released: only the hedge can answer
        return {"y": np.asarray(request.inputs["x"]) * 2}

    inner.behaviours["a"] = stalls_as_scripted
    events = HedgeEvents()
    dp = traffic(inner, spec(hedging={"delay_ms": 1, "max_fraction": 0.5}), observer=events)
    infer(dp)  # half a token: outlives the delay, the cap refuses a second copy
    infer(dp)  # a whole token: hedged
    infer(dp)  # answers at once: no event
    assert events.events == [("ep", "over_budget"), ("ep", "sent")]
