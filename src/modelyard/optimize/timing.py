"""Timing one call again and again with an injected timer, and the numbers that summarise it.

The loop takes its timer (``time.perf_counter`` in the command, a fake one in tests) so tests
check the arithmetic, never the speed of the machine they run on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelyard.bench.stats import percentile
from modelyard.errors import InvalidInputError
from modelyard.optimize.defaults import SECONDS, WARMUP_CALLS

Timer = Callable[[], float]
MAX_BATCH_SIZE = 1 << 16


@dataclass(frozen=True)
class LoopLimits:
    """How long to time one batch size: at least ``seconds`` and ``min_iterations`` timed calls
    (after ``warmup`` untimed ones), at most ``max_iterations``."""

    seconds: float = SECONDS
    warmup: int = WARMUP_CALLS
    min_iterations: int = 5
    max_iterations: int = 100_000


@dataclass(frozen=True)
class BatchStats:
    """Latency of ``predict`` on batches of ``batch_size`` rows (seconds)."""

    batch_size: int
    iterations: int
    p50_s: float
    p99_s: float
    mean_s: float
    rows_per_s: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "batch_size": self.batch_size,
            "iterations": self.iterations,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "mean_s": self.mean_s,
            "rows_per_s": self.rows_per_s,
        }


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,8,64"`` -> (1, 8, 64): positive, at most MAX_BATCH_SIZE, duplicates dropped, sorted."""
    sizes: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        if not (item.isascii() and item.isdigit()) or not 1 <= int(item) <= MAX_BATCH_SIZE:
            raise InvalidInputError(
                f"--batch-sizes: {item!r} is not a batch size (1..{MAX_BATCH_SIZE})"
            )
        sizes.add(int(item))
    if not sizes:
        raise InvalidInputError("--batch-sizes: give at least one size, e.g. 1,8,64")
    return tuple(sorted(sizes))


def summarize(batch_size: int, latencies_s: Sequence[float]) -> BatchStats:
    """p50 / p99 (linear interpolation, numpy's default), mean, and rows per second of the time
    spent in the calls."""
    if not latencies_s:
        raise InvalidInputError("no timed calls to summarise")
    data = sorted(latencies_s)
    total = sum(data)
    return BatchStats(
        batch_size=batch_size,
        iterations=len(data),
        p50_s=percentile(data, 50.0, presorted=True),
        p99_s=percentile(data, 99.0, presorted=True),
        mean_s=total / len(data),
        rows_per_s=batch_size * len(data) / total if total > 0 else float("inf"),
    )


def time_calls(
    call: Callable[[], object],
    limits: LoopLimits,
    timer: Timer,
    progress: Callable[[float], None] | None = None,
) -> list[float]:
    """Run ``call`` ``limits.warmup`` times untimed, then time it until both ``limits.seconds``
    have passed and ``limits.min_iterations`` calls were made (or ``max_iterations``). Reports
    the fraction done to ``progress`` about ten times a second."""
    for _ in range(limits.warmup):
        call()
    latencies: list[float] = []
    start = last_report = timer()
    while True:
        t0 = timer()
        call()
        t1 = timer()
        latencies.append(t1 - t0)
        elapsed = t1 - start
        done = elapsed >= limits.seconds and len(latencies) >= limits.min_iterations
        if done or len(latencies) >= limits.max_iterations:
            break
        if progress is not None and t1 - last_report >= 0.1:
            last_report = t1
            progress(_fraction(elapsed, len(latencies), limits))
    if progress is not None:
        progress(1.0)
    return latencies


def _fraction(elapsed: float, calls: int, limits: LoopLimits) -> float:
    by_time = elapsed / limits.seconds if limits.seconds > 0 else 1.0
    by_calls = calls / limits.min_iterations if limits.min_iterations > 0 else 1.0
    return max(0.0, min(1.0, by_time, by_calls))
