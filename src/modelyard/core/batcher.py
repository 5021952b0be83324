"""The dynamic batcher: coalesces concurrent requests for one loaded version into one ``predict``.

Requests are merged along the first (batch) axis and the outputs split back by row counts.
Decisions come from :mod:`modelyard.core.batch_policy`; this module only moves data and futures.
While a batch runs, new requests queue up, so under load batches grow by themselves even with
``max_wait_s = 0`` (no added latency when idle).

Only requests with the same group key share a batch: same input names, dtypes and trailing shapes,
plus an optional *bucket* from the runtime (e.g. a token-length bucket, so that short sentences
are not padded to the length of a long one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from modelyard.core.batch_policy import BatchConfig, decide_flush, ewma, must_shed, pick_batch
from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import BatchEvent
from modelyard.errors import InferenceError, InvalidInputError, ModelYardError, UnavailableError
from modelyard.types import Array

log = logging.getLogger("modelyard.batcher")

PredictFn = Callable[[Mapping[str, Array]], dict[str, Array]]
BucketFn = Callable[[Mapping[str, Array]], Hashable | None]


@dataclass(slots=True)
class _Pending:
    inputs: Mapping[str, Array]
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[dict[str, Array]]
    enqueued_at: float
    deadline: float | None


@dataclass
class BatcherStats:
    requests: int = 0
    batches: int = 0
    rows: int = 0
    shed: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def mean_batch_rows(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


def _group_key(inputs: Mapping[str, Array]) -> tuple[object, ...]:
    return tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items()))


def _rows(inputs: Mapping[str, Array]) -> int:
    counts = {a.shape[0] if a.ndim else 1 for a in inputs.values()}
    if len(counts) != 1:
        raise InvalidInputError("all inputs of a batched model must have the same first dimension")
    return counts.pop()


class Batcher:
    """One per loaded version. ``await submit(inputs)`` returns that request's outputs."""

    def __init__(
        self,
        predict: PredictFn,
        config: BatchConfig,
        *,
        executor: concurrent.futures.Executor,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "",
        bucket: BucketFn | None = None,
        on_batch: Callable[[BatchEvent], None] | None = None,
        model: str = "",
        version: str = "",
    ) -> None:
        """``on_batch`` is told about every executed batch (as ``model``, ``version``)."""
        self._predict = predict
        self._bucket = bucket
        self._on_batch = on_batch
        self._labels = (model, version)
        self.config = config
        self._executor = executor
        self._clock = clock
        self._name = name
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._latency: float | None = None
        self._last_arrival: float | None = None
        self._arrival_gap: float | None = None  # EWMA of the time between requests
        self._last_batch_requests = 0
        self.stats = BatcherStats()

    async def submit(
        self, inputs: Mapping[str, Array], deadline: float | None = None
    ) -> dict[str, Array]:
        rows = _rows(inputs)
        if rows == 0:  # it would never fill or age a batch: the caller runs it unbatched
            raise InvalidInputError(f"model '{self._name}': a request with no rows is not batched")
        if self._queued_rows + rows > self.config.max_queue_rows:
            self.stats.shed += 1
            raise UnavailableError(f"model '{self._name}' is overloaded (queue full); retry later")
        loop = asyncio.get_running_loop()
        pending = _Pending(
            inputs,
            rows,
            self._key(inputs),
            loop.create_future(),
            self._clock.monotonic(),
            deadline,
        )
        if self._last_arrival is not None:
            self._arrival_gap = ewma(self._arrival_gap, pending.enqueued_at - self._last_arrival)
        self._last_arrival = pending.enqueued_at
        self._queue.append(pending)
        self._queued_rows += rows
        self.stats.requests += 1
        self._maybe_flush()
        return await pending.future

    def _key(self, inputs: Mapping[str, Array]) -> tuple[object, ...]:
        key = _group_key(inputs)
        if self._bucket is None:
            return key
        try:
            bucket = self._bucket(inputs)
        except ModelYardError:
            raise  # bad input (e.g. invalid text): reject before it queues
        except Exception:
            # A bucket is only a grouping hint: predict reports the real problem, if any.
            log.exception("batch bucket failed for %s; batching without one", self._name)
            bucket = None
        return (*key, bucket)

    def _maybe_flush(self) -> None:
        while True:
            oldest = self._queue[0].enqueued_at if self._queue else 0.0
            decision = decide_flush(
                queued_rows=self._queued_rows,
                oldest_age_s=self._clock.monotonic() - oldest,
                batches_in_flight=self._in_flight,
                config=self.config,
                arrival_gap_s=self._arrival_gap,
                lone_request=len(self._queue) == 1 and self._last_batch_requests == 1,
            )
            if not decision.flush:
                if decision.wait_s is not None and self._timer is None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(decision.wait_s, self._on_timer)
                return
            self._flush_one()

    def _on_timer(self) -> None:
        self._timer = None
        self._maybe_flush()

    def _flush_one(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        picked = pick_batch(
            [p.rows for p in self._queue],
            [p.key for p in self._queue],
            self.config.max_batch_size,
        )
        batch = self._take(picked)
        self._last_batch_requests = len(batch)
        self._queued_rows -= sum(p.rows for p in batch)
        now = self._clock.monotonic()
        expected = self._latency or 0.0
        live: list[_Pending] = []
        for p in batch:
            if p.future.done():
                continue  # the caller went away (cancelled)
            if must_shed(now=now, deadline=p.deadline, expected_latency_s=expected):
                self.stats.shed += 1
                p.future.set_exception(
                    UnavailableError(
                        f"model '{self._name}' cannot answer before the request deadline"
                    )
                )
                continue
            live.append(p)
        if not live:
            return
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._run(live))

    def _take(self, positions: list[int]) -> list[_Pending]:
        """Remove the requests at ``positions`` (ascending) from the queue, in order."""
        if positions[-1] == len(positions) - 1:  # a prefix: the common case
            return [self._queue.popleft() for _ in positions]
        chosen = set(positions)
        batch = [self._queue[i] for i in positions]
        self._queue = deque(p for i, p in enumerate(self._queue) if i not in chosen)
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = self._clock.monotonic()
        failed = True  # until every request has its part
        try:
            merged = _merge(batch)
            # copy_context: predict sees the request's contextvars (e.g. its trace span).
            run = contextvars.copy_context().run
            outputs = await loop.run_in_executor(self._executor, run, self._predict, merged)
            parts = _split(outputs, [p.rows for p in batch], self._name)
        except Exception as exc:
            err = exc
            if not isinstance(exc, ModelYardError):
                log.exception("batch of %d failed for %s", len(batch), self._name)
                err = InferenceError(f"model '{self._name}' failed: {type(exc).__name__}: {exc}")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
        else:
            failed = False
            for p, part in zip(batch, parts, strict=True):
                if not p.future.done():
                    p.future.set_result(part)
        finally:
            elapsed = self._clock.monotonic() - started
            self._latency = ewma(self._latency, elapsed)
            rows = sum(p.rows for p in batch)
            self.stats.batches += 1
            self.stats.rows += rows
            if len(self.stats.batch_sizes) < 10_000:
                self.stats.batch_sizes.append(rows)
            self._in_flight -= 1
            self._maybe_flush()
            if self._on_batch is not None:
                self._report(self._on_batch, batch, rows, started, elapsed, failed)

    def _report(
        self,
        on_batch: Callable[[BatchEvent], None],
        batch: list[_Pending],
        rows: int,
        started: float,
        elapsed: float,
        failed: bool,
    ) -> None:
        waits = [started - p.enqueued_at for p in batch]
        event = BatchEvent(
            *self._labels, rows, len(batch), max(waits), elapsed, sum(waits), failed=failed
        )
        try:
            on_batch(event)
        except Exception:
            log.exception("on_batch failed for %s", self._name)


def _merge(batch: list[_Pending]) -> dict[str, Array]:
    if len(batch) == 1:
        return dict(batch[0].inputs)
    names = batch[0].inputs.keys()
    return {n: np.concatenate([p.inputs[n] for p in batch], axis=0) for n in names}


def _split(outputs: dict[str, Array], rows: list[int], name: str) -> list[dict[str, Array]]:
    if len(rows) == 1:
        return [outputs]
    total = sum(rows)
    bounds = np.cumsum(rows)[:-1]
    parts: list[dict[str, Array]] = [{} for _ in rows]
    for out_name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise InferenceError(
                f"model '{name}' output '{out_name}' has first dim "
                f"{arr.shape[0] if arr.ndim else 'scalar'}, expected {total}; "
                "it cannot be batched (set max_batch_size=1)"
            )
        for i, piece in enumerate(np.split(arr, bounds, axis=0)):
            parts[i][out_name] = piece
    return parts
