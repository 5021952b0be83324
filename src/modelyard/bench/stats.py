"""Percentile math and the per-run numbers every load generator reports in the same shape."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelyard.errors import InvalidInputError

NAN = float("nan")


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated between the two
    nearest ranks (numpy's default method). NaN when there are no values."""
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise InvalidInputError(f"percentile q must be within 0..100, got {q}")
    if not values:
        return NAN
    data = values if presorted else sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return data[lo] + (data[hi] - data[lo]) * frac


def median(values: Iterable[float]) -> float:
    """Median of the finite values (NaN, e.g. a run with no samples, is left out); NaN if none."""
    return percentile([v for v in values if not math.isnan(v)], 50.0)


@dataclass(frozen=True, slots=True)
class RunStats:
    """One timed run of a load generator against one target.

    ``requests`` counts completed responses of any status; ``errors`` counts non-2xx/3xx responses
    plus socket errors and timeouts. Latencies are in seconds.
    """

    requests: int
    errors: int
    duration_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float

    @property
    def rps(self) -> float:
        """Completed requests per second of wall time."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else (1.0 if self.errors else 0.0)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "duration_s": self.duration_s,
            "rps": self.rps,
            "p50_s": self.p50_s,
            "p90_s": self.p90_s,
            "p99_s": self.p99_s,
            "max_s": self.max_s,
            "mean_s": self.mean_s,
        }


def summarize(latencies_s: Sequence[float], *, errors: int, duration_s: float) -> RunStats:
    """RunStats from raw per-request latencies (seconds, any order)."""
    data = sorted(latencies_s)
    return RunStats(
        requests=len(data),
        errors=errors,
        duration_s=duration_s,
        p50_s=percentile(data, 50, presorted=True),
        p90_s=percentile(data, 90, presorted=True),
        p99_s=percentile(data, 99, presorted=True),
        max_s=data[-1] if data else NAN,
        mean_s=math.fsum(data) / len(data) if data else NAN,
    )
