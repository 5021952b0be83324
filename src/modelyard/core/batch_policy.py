"""Pure decisions of the dynamic batcher: when to flush, what to take, whom to shed.

No event loop, no threads: the mechanism in ``batcher.py`` feeds these functions the facts and does
what they say. Tested with tables of cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Per-version batching settings (from the manifest's hints or the endpoint)."""

    max_batch_size: int = 32
    max_wait_s: float = 0.0
    max_concurrent_batches: int = 1
    max_queue_rows: int = 4096


@dataclass(frozen=True, slots=True)
class FlushDecision:
    flush: bool
    wait_s: float | None  # when not flushing: how long until a flush is due (None = on an event)


def decide_flush(
    *,
    queued_rows: int,
    oldest_age_s: float,
    batches_in_flight: int,
    config: BatchConfig,
) -> FlushDecision:
    """Flush when there is work, a batch slot is free, and either the batch is full or the
    oldest request has waited ``max_wait_s``. Otherwise say how long to wait."""
    if queued_rows == 0 or batches_in_flight >= config.max_concurrent_batches:
        return FlushDecision(False, None)
    if queued_rows >= config.max_batch_size or oldest_age_s >= config.max_wait_s:
        return FlushDecision(True, None)
    return FlushDecision(False, config.max_wait_s - oldest_age_s)


def take_rows(rows: Sequence[int], compatible: Sequence[bool], max_batch_size: int) -> int:
    """How many requests from the head of the queue go into the next batch.

    ``rows[i]`` is request i's row count; ``compatible[i]`` says whether it can share a batch with
    the head request (same trailing shapes and dtypes). Requests are taken in order while they are
    compatible and fit; the head is always taken, even when it alone exceeds the limit.
    """
    if not rows:
        return 0
    total = rows[0]
    n = 1
    for r, ok in zip(rows[1:], compatible[1:], strict=True):
        if not ok or total + r > max_batch_size:
            break
        total += r
        n += 1
    return n


def must_shed(*, now: float, deadline: float | None, expected_latency_s: float) -> bool:
    """A request whose deadline cannot be met even if it ran now is rejected early."""
    return deadline is not None and now + expected_latency_s > deadline


def ewma(previous: float | None, sample: float, alpha: float = 0.2) -> float:
    """Exponentially weighted moving average of batch latency (the shedding estimate)."""
    return sample if previous is None else (1 - alpha) * previous + alpha * sample
