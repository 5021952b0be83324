"""The statistics observer, fed events by hand, with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.observer import CANCELLED, SHADOW_ROUTE, BatchEvent, InferEvent
from modelyard.core.statistics import InferenceStatistics
from modelyard.types import InferRequest, ModelStatistics, RequestContext, StatDuration

MS = 1_000_000  # ns


def event(
    code: str = "OK",
    *,
    latency_s: float = 0.002,
    rows: int = 1,
    inferences: int = 1,
    model: str = "m",
    version: str = "1",
    route: str = "",
) -> InferEvent:
    request = InferRequest(inputs={"x": np.zeros((rows, 3), dtype=np.float32)})
    return InferEvent(
        endpoint=model,
        model=model,
        version=version,
        route=route,
        code=code,
        latency_s=latency_s,
        request=request,
        response=None,
        ctx=RequestContext(),
        inferences=inferences,
    )


def batch(rows: int, requests: int, infer_s: float, **kw: object) -> BatchEvent:
    fields: dict[str, object] = {"queue_wait_s": 0.0, "queue_wait_total_s": 0.0, **kw}
    return BatchEvent("m", "1", rows, requests, infer_s=infer_s, **fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=10.0, wall_start=1_700_000_000.0)


@pytest.fixture
def stats(clock: FakeClock) -> InferenceStatistics:
    return InferenceStatistics(clock)


def test_a_version_never_seen_is_all_zeros(stats: InferenceStatistics) -> None:
    assert stats.get("m", "4") == ModelStatistics(name="m", version="4")
    assert stats.versions("m") == []


def test_successes_count_requests_inferences_and_latency(
    stats: InferenceStatistics, clock: FakeClock
) -> None:
    stats.on_infer(event(latency_s=0.002, rows=4, inferences=4))
    clock.advance(1.5)
    stats.on_infer(event(latency_s=0.003, rows=1, inferences=1))
    got = stats.get("m", "1")
    assert got.success == StatDuration(2, 5 * MS)
    assert got.fail == StatDuration()
    assert got.inference_count == 5
    assert got.last_inference_ms == 1_700_000_001_500
    assert stats.versions("m") == ["1"]


def test_failures_count_in_fail_and_move_last_inference(
    stats: InferenceStatistics, clock: FakeClock
) -> None:
    stats.on_infer(event())
    clock.advance(2.0)
    stats.on_infer(event("INVALID_ARGUMENT", latency_s=0.0005, rows=7, inferences=7))
    stats.on_infer(event("INTERNAL", latency_s=0.001))
    got = stats.get("m", "1")
    assert got.success.count == 1
    assert got.fail == StatDuration(2, 1_500_000)
    assert got.inference_count == 1  # failed requests are not inferences
    assert got.last_inference_ms == 1_700_000_002_000


def test_cancelled_unresolved_and_shadow_calls_are_left_out(
    stats: InferenceStatistics, clock: FakeClock
) -> None:
    stats.on_infer(event())
    clock.advance(5.0)
    stats.on_infer(event(CANCELLED))  # e.g. the losing copy of a hedged request
    stats.on_infer(event("NOT_FOUND", version=""))  # never resolved to a version
    stats.on_infer(event(route=SHADOW_ROUTE))  # counted in the shadow helper process
    got = stats.get("m", "1")
    assert (got.success.count, got.fail.count) == (1, 0)
    assert got.last_inference_ms == 1_700_000_000_000
    assert stats.versions("m") == ["1"]


def test_versions_are_kept_apart(stats: InferenceStatistics) -> None:
    stats.on_infer(event(version="1"))
    stats.on_infer(event(version="2"))
    stats.on_infer(event(version="2"))
    stats.on_infer(event(model="other", version="2"))
    assert sorted(stats.versions("m")) == ["1", "2"]
    assert stats.get("m", "2").success.count == 2
    assert stats.get("other", "2").success.count == 1


def test_batches_give_executions_queue_compute_and_batch_stats(
    stats: InferenceStatistics,
) -> None:
    stats.on_batch(batch(8, 3, 0.010, queue_wait_s=0.004, queue_wait_total_s=0.006))
    stats.on_batch(batch(8, 2, 0.012))
    stats.on_batch(batch(1, 1, 0.001, queue_wait_s=0.0002, queue_wait_total_s=0.0002))
    got = stats.get("m", "1")
    assert got.execution_count == 3
    assert got.queue == StatDuration(6, 6_200_000)
    # Each request of a batch is charged the batch's compute time.
    assert got.compute_infer == StatDuration(6, 3 * 10 * MS + 2 * 12 * MS + 1 * MS)
    # Input preparation and output selection are inside that one span: counted, 0 ns.
    assert got.compute_input == got.compute_output == StatDuration(6, 0)
    sizes = [(b.batch_size, b.compute_infer) for b in got.batch_stats]
    assert sizes == [(1, StatDuration(1, 1 * MS)), (8, StatDuration(2, 22 * MS))]
    assert all(b.compute_input == StatDuration(b.compute_infer.count, 0) for b in got.batch_stats)
    assert (got.success.count, got.last_inference_ms) == (0, 0)  # requests report on their own


def test_a_failed_batch_is_not_an_execution(stats: InferenceStatistics) -> None:
    stats.on_batch(batch(4, 2, 0.5, failed=True))
    got = stats.get("m", "1")
    assert (got.execution_count, got.queue.count, got.compute_infer.count) == (0, 0, 0)
    assert got.batch_stats == ()


def test_without_the_total_wait_each_request_takes_the_oldest_wait(
    stats: InferenceStatistics,
) -> None:
    stats.on_batch(batch(3, 3, 0.001, queue_wait_s=0.002, queue_wait_total_s=None))
    assert stats.get("m", "1").queue == StatDuration(3, 6 * MS)


def test_negative_durations_from_a_stepped_clock_count_as_zero(
    stats: InferenceStatistics,
) -> None:
    stats.on_infer(event(latency_s=-0.001))
    assert stats.get("m", "1").success == StatDuration(1, 0)


def test_durations_round_to_the_nearest_nanosecond(stats: InferenceStatistics) -> None:
    stats.on_infer(event(latency_s=1.6e-9))
    stats.on_infer(event(latency_s=1.4e-9))
    stats.on_batch(batch(1, 1, 2.7e-9, queue_wait_total_s=0.6e-9))
    got = stats.get("m", "1")
    assert got.success == StatDuration(2, 3)
    assert (got.compute_infer, got.queue) == (StatDuration(1, 3), StatDuration(1, 1))


def test_last_inference_never_moves_back_when_the_wall_clock_does(
    stats: InferenceStatistics, clock: FakeClock
) -> None:
    clock.advance(2.0)
    stats.on_infer(event())
    clock.advance(-1.0)
    stats.on_infer(event("INTERNAL"))
    assert stats.get("m", "1").last_inference_ms == 1_700_000_002_000


@pytest.mark.parametrize(
    ("rows", "inferences", "counted"),
    [
        # Batching off (configuration max_batch_size 0): one per request, whatever its rows.
        (5, 1, 1),
        (1, 1, 1),
        (0, 1, 1),
        # Batching on (max_batch_size > 0): the dataplane gives the request's rows.
        (5, 5, 5),
        (64, 64, 64),
        (0, 0, 0),
    ],
)
def test_inference_count_adds_what_the_dataplane_worked_out(
    stats: InferenceStatistics, rows: int, inferences: int, counted: int
) -> None:
    """The observer trusts ``InferEvent.inferences``, not the request's first dimension."""
    stats.on_infer(event(rows=rows, inferences=inferences))
    assert stats.get("m", "1").inference_count == counted


def test_an_event_that_says_nothing_counts_one_inference(stats: InferenceStatistics) -> None:
    request = InferRequest(inputs={"x": np.zeros((5, 3), dtype=np.float32)})
    stats.on_infer(InferEvent("m", "m", "1", "", "OK", 0.001, request, None, RequestContext()))
    assert stats.get("m", "1").inference_count == 1
