import math

import numpy as np
import pytest

from modelyard.bench.stats import RunStats, median, percentile, summarize
from modelyard.errors import InvalidInputError


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4, 5], 0, 1),
        ([1, 2, 3, 4, 5], 100, 5),
        ([1, 2, 3, 4, 5], 50, 3),
        ([1, 2, 3, 4, 5], 25, 2),
        ([1, 2], 50, 1.5),
        ([1, 2], 99, 1.99),
        ([7], 99, 7),
        ([5, 1, 4, 2, 3], 50, 3),  # unsorted input
        ([10, 20, 30, 40], 90, 37),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_linear_method() -> None:
    data = np.random.default_rng(1).exponential(size=1001).tolist()
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(InvalidInputError, match="percentile q"):
        percentile([1.0], q)


def test_median_skips_nan_runs() -> None:
    assert median([3.0, float("nan"), 1.0, 2.0]) == 2.0
    assert math.isnan(median([float("nan")]))


def test_summarize_reports_percentiles_mean_and_rate() -> None:
    latencies = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    stats = summarize(latencies, errors=5, duration_s=2.0)
    assert stats.requests == 100
    assert stats.rps == 50.0
    assert stats.error_rate == 0.05
    assert stats.p50_s == pytest.approx(0.0505)
    assert stats.p99_s == pytest.approx(0.09901)
    assert stats.max_s == 0.1
    assert stats.mean_s == pytest.approx(0.0505)


def test_summarize_with_no_responses_has_nan_latency_and_full_error_rate() -> None:
    stats = summarize([], errors=3, duration_s=1.0)
    assert stats.requests == 0
    assert stats.rps == 0.0
    assert stats.error_rate == 1.0
    assert all(math.isnan(v) for v in (stats.p50_s, stats.p99_s, stats.max_s, stats.mean_s))


def test_rps_of_zero_duration_is_zero() -> None:
    stats = RunStats(10, 0, 0.0, 1, 1, 1, 1, 1)
    assert stats.rps == 0.0
    assert stats.as_dict()["rps"] == 0.0
