"""Pure decisions of the dynamic batcher: when to flush, what to take, whom to shed, and which
length bucket a variable-length request falls in.

No event loop, no threads: the mechanism in ``batcher.py`` feeds these functions the facts and does
what they say. Tested with tables of cases.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Per-version batching settings (from the manifest's hints or the endpoint)."""

    max_batch_size: int = 32
    max_wait_s: float = 0.0
    max_concurrent_batches: int = 1
    max_queue_rows: int = 4096


def batching_enabled(max_batch_size: int, input_shapes: Iterable[Sequence[int]]) -> bool:
    """Whether a version gets a dynamic batcher: its hints allow more than one row per batch
    and every input has a variable first dimension (the rows that batches are merged along)."""
    return max_batch_size > 1 and all(shape and shape[0] == -1 for shape in input_shapes)


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
    arrival_gap_s: float | None = None,
    lone_request: bool = False,
) -> FlushDecision:
    """Flush when there is work, a batch slot is free, and either the batch is full or the
    oldest request has waited ``max_wait_s``. Otherwise say how long to wait.

    ``arrival_gap_s`` is the recent mean time between requests. When the rest of the wait
    would not even see one more request arrive (a lone client, light traffic), waiting only
    adds latency: flush now. Under load the gap is small and the batch fills as configured.
    ``lone_request`` says the queue holds one request and the previous batch held one too: the
    last wait caught nobody, so this one would not either (a closed-loop client only sends
    after its answer).
    """
    if queued_rows == 0 or batches_in_flight >= config.max_concurrent_batches:
        return FlushDecision(False, None)
    if queued_rows >= config.max_batch_size or oldest_age_s >= config.max_wait_s:
        return FlushDecision(True, None)
    remaining = config.max_wait_s - oldest_age_s
    if lone_request or (arrival_gap_s is not None and arrival_gap_s > remaining):
        return FlushDecision(True, None)
    return FlushDecision(False, remaining)


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


def pick_batch(rows: Sequence[int], keys: Sequence[Hashable], max_batch_size: int) -> list[int]:
    """Queue positions of the requests that form the next batch.

    The head request is always taken (even when it alone exceeds the limit), then later requests
    whose key equals the head's (same trailing shapes, dtypes and length bucket), in queue order,
    until the next one would overflow ``max_batch_size``. Requests of other keys are skipped
    rather than ending the batch, so a mix of lengths in the queue does not cut every batch short;
    they keep their place and lead a later batch.
    """
    if not rows:
        return []
    head = keys[0]
    total = rows[0]
    taken = [0]
    for i in range(1, len(rows)):
        if keys[i] != head:
            continue
        if total + rows[i] > max_batch_size:
            break
        total += rows[i]
        taken.append(i)
    return taken


def length_bucket(tokens: int, *, smallest: int = 8, largest: int | None = None) -> int:
    """The length bucket of a sequence of ``tokens`` tokens: the next power of two, at least
    ``smallest`` and at most ``largest`` (the truncation length).

    Sequences in one bucket differ at most twofold in length, so a batch padded to its longest
    row is at least about half real tokens, while there are few enough buckets (log2 of the
    maximum length) that batches still fill under load.
    """
    if tokens <= smallest:
        bucket = smallest
    else:
        bucket = 1 << (tokens - 1).bit_length()
    return bucket if largest is None else min(bucket, largest)


def padding_efficiency(real_tokens: int, padded_tokens: int) -> float:
    """Real tokens / padded tokens (1.0 before anything ran): the share of work not wasted."""
    return real_tokens / padded_tokens if padded_tokens else 1.0


def run_inline(recent_s: float | None, threshold_s: float) -> bool:
    """Run a prediction directly on the event loop (no thread hop) when its recent duration is
    known and below ``threshold_s``. A thread hop costs tens of microseconds of wake-ups, more
    than a small model's whole prediction; a slow model must not stall the loop."""
    return recent_s is not None and threshold_s > 0 and recent_s < threshold_s
