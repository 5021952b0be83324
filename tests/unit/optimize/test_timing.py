"""The timing loop and its numbers, driven by a fake clock: no test depends on machine speed."""

from __future__ import annotations

import itertools

import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError
from modelyard.optimize.timing import LoopLimits, parse_batch_sizes, summarize, time_calls


@pytest.mark.parametrize(
    ("text", "sizes"),
    [("1,8,64", (1, 8, 64)), (" 64, 1 ,8,8 ", (1, 8, 64)), ("32", (32,)), ("1,", (1,))],
)
def test_parse_batch_sizes(text: str, sizes: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", ",", "0", "-1", "1.5", "a", "65537", "²"])
def test_bad_batch_sizes(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--batch-sizes"):
        parse_batch_sizes(text)


def test_summarize_percentiles_mean_and_rows_per_second() -> None:
    stats = summarize(8, [0.004, 0.001, 0.003, 0.002])  # any order
    assert stats.iterations == 4
    assert stats.p50_s == pytest.approx(0.0025)
    assert stats.p99_s == pytest.approx(0.003 + 0.001 * 0.97)  # between the two top ranks
    assert stats.mean_s == pytest.approx(0.0025)
    assert stats.rows_per_s == pytest.approx(8 * 4 / 0.010)


def test_summarize_needs_calls() -> None:
    with pytest.raises(InvalidInputError):
        summarize(1, [])


def test_loop_warms_up_untimed_then_times_until_seconds_and_min_calls() -> None:
    clock = FakeClock(start=0.0)
    durations = itertools.chain([100.0] * 3, itertools.cycle([0.25, 0.5]))
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        clock.advance(next(durations))

    limits = LoopLimits(seconds=2.0, warmup=3, min_iterations=2)
    latencies = time_calls(call, limits, clock.monotonic)
    # The 100 s warm-up calls are not timed; timed calls stop once 2 s have passed.
    assert latencies == [0.25, 0.5, 0.25, 0.5, 0.25, 0.5]
    assert calls == 9


def test_loop_makes_min_calls_even_with_no_time_and_stops_at_max() -> None:
    clock = FakeClock(start=0.0)
    latencies = time_calls(
        lambda: clock.advance(1.0),
        LoopLimits(seconds=0, warmup=0, min_iterations=4),
        clock.monotonic,
    )
    assert latencies == [1.0] * 4
    capped = LoopLimits(seconds=1e9, warmup=0, min_iterations=1, max_iterations=7)
    assert len(time_calls(lambda: clock.advance(1.0), capped, clock.monotonic)) == 7


def test_loop_reports_progress_ending_at_one() -> None:
    clock = FakeClock(start=0.0)
    seen: list[float] = []
    limits = LoopLimits(seconds=1.0, warmup=0, min_iterations=1)
    time_calls(lambda: clock.advance(0.25), limits, clock.monotonic, seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]
