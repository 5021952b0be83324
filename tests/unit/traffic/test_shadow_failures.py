"""Shadow failures are logged, rate-limited per shadow; drops carry the shadow's real version."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import InferEvent, Observer
from modelyard.errors import InferenceError
from modelyard.traffic import shadow_worker
from modelyard.traffic.shadow import ProcessLoad, ShadowJob, ShadowRunner
from modelyard.traffic.shadow_log import ShadowErrorLog
from modelyard.traffic.shadow_process import JobMessage, ResultMessage, pack
from modelyard.traffic.spec import EndpointSpec, parse_spec
from modelyard.traffic.stats import SHADOW_ROUTE, StatsCollector
from modelyard.types import InferRequest, InferResponse, RequestContext

X = np.asarray([[1.0, -1.0]], dtype=np.float32)


# ---- the helper process logs a failing shadow, at most once a minute ------------------------
class FailingServing:
    """The helper's serving core for a shadow whose runtime raises on every request."""

    def __init__(self, events: Observer) -> None:
        self.events = events
        self.n = 0

    async def infer(
        self, name: str, ref: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.n += 1
        self.events.on_infer(
            InferEvent(
                ctx.endpoint or "", name, "1", SHADOW_ROUTE, "INTERNAL", 0.0, request, None, ctx
            )
        )
        raise InferenceError(f"could not predict with {name}:1: boom #{self.n}")


class Results:
    def __init__(self) -> None:
        self.added: list[ResultMessage] = []

    def add(self, result: ResultMessage) -> None:
        self.added.append(result)


def job(n: int, model: str = "slow") -> JobMessage:
    return JobMessage(
        job_id=n,
        model=model,
        ref=None,
        inputs=pack({"x": X}),
        parameters={},
        outputs=None,
        compare=(None, "argmax", 1e-6, 0.0),
        primary=pack({"y": X}),
        timeout_s=None,
        request_id=f"r{n}-shadow",
        endpoint="fraud",
    )


def test_helper_logs_a_failing_shadow_at_once_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    events = shadow_worker._LastEvent()
    serving = FailingServing(events)
    results = Results()
    errors = ShadowErrorLog(logging.getLogger("modelyard.shadow"), clock)
    caplog.set_level(logging.WARNING, logger="modelyard.shadow")

    def one(n: int, model: str = "slow") -> None:
        asyncio.run(
            shadow_worker._run(
                cast(Any, serving), events, job(n, model), cast(Any, results), clock, errors
            )
        )

    one(1)
    assert [r.getMessage() for r in caplog.records] == [
        "shadow slow@1 of endpoint fraud failed: could not predict with slow:1: boom #1"
    ]
    assert caplog.records[0].levelname == "WARNING"
    for n in range(2, 12):  # ten more within the minute: counted, not logged
        clock.advance(5.0)
        one(n)
    one(12, model="other")  # another shadow has its own limit
    assert len(caplog.records) == 2
    clock.advance(10.0)  # 60 s after the first line
    one(13)
    assert caplog.records[2].getMessage() == (
        "shadow slow@1 of endpoint fraud: 11 more failed in the last 60 s "
        "(last: could not predict with slow:1: boom #13)"
    )
    assert [r.code for r in results.added] == ["INTERNAL"] * 13  # every failure still counted


def test_a_shadow_failing_again_after_a_quiet_minute_is_logged_as_it_is() -> None:
    clock = FakeClock()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test.shadow_log")
    log.addHandler(Capture())
    errors = ShadowErrorLog(log, clock)
    errors.failed("m@2", "ep", "first")
    clock.advance(120.0)
    errors.failed("m@2", "ep", "second")
    assert lines == [
        "shadow m@2 of endpoint ep failed: first",
        "shadow m@2 of endpoint ep failed: second",
    ]


# ---- drops are labelled with the version the shadow runs on ---------------------------------
def spec() -> EndpointSpec:
    return parse_spec(
        {
            "name": "fraud",
            "routes": [{"name": "a", "model": "fraud", "weight": 100}],
            "shadows": [{"model": "slow", "fraction": 1.0}],
        }
    )


class Outcomes(Observer):
    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        self.seen[(shadow, outcome)] += 1


class HelperProcess:
    """An executor like the helper process: this process never loads the shadow version."""

    def __init__(self) -> None:
        self.running: list[tuple[ShadowJob, Callable[[int], None]]] = []

    def submit(self, job: ShadowJob, done: Callable[[int], None]) -> bool:
        self.running.append((job, done))
        return True


def test_drops_carry_the_version_the_shadow_last_ran_on() -> None:
    clock = FakeClock()
    stats = StatsCollector(interval_s=10, replica="r", clock=clock)
    outcomes = Outcomes()
    helper = HelperProcess()
    runner = ShadowRunner(
        cast(DataPlane, None),
        stats,
        max_concurrency=1,
        clock=clock,
        rnd=lambda: 0.0,
        resolve_cached=lambda model, ref: None,  # not loaded in this process
        load=ProcessLoad(clock=clock, cpu=lambda: 0.0, cpus=1),
        executor=helper,
        observer=outcomes,
    )

    async def request() -> None:
        primary: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
        req = InferRequest(inputs={"x": X})
        runner.dispatch(spec(), req, primary, RequestContext())
        primary.set_result(InferResponse("fraud", "3", {"y": X}))
        await asyncio.sleep(0)  # two loop turns (no waiting): the shadow starts
        await asyncio.sleep(0)

    async def scenario() -> None:
        await request()
        await request()  # the one slot is taken: dropped before any version is known
        ((_, done),) = helper.running
        done(7)  # the helper answered: slow resolved to version 7
        await request()
        await request()  # dropped again: now labelled with version 7

    asyncio.run(scenario())
    assert outcomes.seen[("slow@0", "dropped")] == 1
    assert outcomes.seen[("slow@7", "dropped")] == 1
    versions = {r.version for r in stats.take(everything=True) if r.route == SHADOW_ROUTE}
    assert versions == {0, 7}
    assert runner.in_flight == 1
