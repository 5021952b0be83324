"""Per-version inference statistics of this process: the numbers of Triton's statistics extension.

An :class:`~modelyard.core.observer.Observer` that adds up, per (model, version):

* from each finished request (``InferEvent``): ``success`` or ``fail`` (count, and the request's
  latency in the serving core), ``inference_count`` and ``last_inference`` (the wall clock when a
  request finished, successful or not, in milliseconds since the epoch);
* from each model execution (``BatchEvent``) that succeeded: ``execution_count`` (one per
  ``predict`` call, however many requests the dynamic batcher merged into it), per request of
  the batch its ``queue`` wait and the batch's ``compute_infer`` time, and ``batch_stats`` per
  batch size (rows; 1 for a version without a batch dimension, as Triton counts it).

``inference_count`` follows Triton: a successful request adds its batch size, in the terms of the
configuration we report (``core/model_config.py``). A version that batches (``max_batch_size`` >
0) adds the request's rows (a request of 64 rows: 64); one that does not (``max_batch_size`` 0:
no batch dimension, the default) adds 1, whatever the first dimension. The dataplane, which knows
the version's batching, works it out (``InferEvent.inferences``); failures add nothing, and
answers from an endpoint's response cache never reach it (Triton leaves cache hits out too).

Calls cancelled by the caller (code ``CANCELLED``: e.g. the losing copy of a hedged request) are
neither successes nor failures. Requests that never resolved to a version (unknown model) and
shadow copies (run and counted in the shadow helper process) are left out. ModelYard measures a
model call as one span, so ``compute_input`` and ``compute_output`` count the same requests and
executions as ``compute_infer`` with 0 ns; the response cache belongs to endpoints, not
versions, so ``cache_hit`` and ``cache_miss`` stay 0.

``on_batch`` may run on inference threads while ``on_infer`` runs on the event loop: one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import CANCELLED, SHADOW_ROUTE, BatchEvent, InferEvent, Observer
from modelyard.types import BatchStatistics, ModelStatistics, StatDuration

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    ns = round(seconds * _NS)
    return ns if ns > 0 else 0


@dataclass(slots=True)
class _Duration:
    count: int = 0
    ns: int = 0

    def frozen(self) -> StatDuration:
        return StatDuration(self.count, self.ns)


@dataclass
class _VersionStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute: _Duration = field(default_factory=_Duration)  # compute_infer, per request
    batches: dict[int, _Duration] = field(default_factory=dict)  # rows -> executions

    def snapshot(self, model: str, version: str) -> ModelStatistics:
        requests = StatDuration(self.compute.count, 0)  # compute_input / compute_output
        batch_stats = []
        for size, run in sorted(self.batches.items()):
            executions = StatDuration(run.count, 0)
            batch_stats.append(BatchStatistics(size, executions, run.frozen(), executions))
        return ModelStatistics(
            name=model,
            version=version,
            last_inference_ms=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            success=self.success.frozen(),
            fail=self.fail.frozen(),
            queue=self.queue.frozen(),
            compute_input=requests,
            compute_infer=self.compute.frozen(),
            compute_output=requests,
            batch_stats=tuple(batch_stats),
        )


class InferenceStatistics(Observer):
    """Counts per (model, version) since this process started; read with :meth:`get`."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], _VersionStats] = {}

    def on_infer(self, event: InferEvent) -> None:
        if not event.version or event.code == CANCELLED or event.route == SHADOW_ROUTE:
            return
        ns = _ns(event.latency_s)
        now_ms = int(self._clock.wall() * 1000)
        ok = event.code == "OK"
        inferences = event.inferences if ok else 0
        key = (event.model, event.version)
        with self._lock:
            entry = self._stats.get(key)
            if entry is None:
                entry = self._stats[key] = _VersionStats()
            if now_ms > entry.last_inference_ms:
                entry.last_inference_ms = now_ms
            outcome = entry.success if ok else entry.fail
            outcome.count += 1
            outcome.ns += ns
            entry.inference_count += inferences

    def on_batch(self, event: BatchEvent) -> None:
        if event.failed:
            return  # its requests count as failures through on_infer
        requests = event.requests
        waited = event.queue_wait_total_s
        if waited is None:
            waited = event.queue_wait_s * requests
        infer_ns = _ns(event.infer_s)
        wait_ns = _ns(waited)
        key = (event.model, event.version)
        with self._lock:
            entry = self._stats.get(key)
            if entry is None:
                entry = self._stats[key] = _VersionStats()
            entry.execution_count += 1
            entry.queue.count += requests
            entry.queue.ns += wait_ns
            entry.compute.count += requests
            entry.compute.ns += infer_ns * requests
            size = event.rows if event.batch_dim else 1
            run = entry.batches.get(size)
            if run is None:
                run = entry.batches[size] = _Duration()
            run.count += 1
            run.ns += infer_ns

    def versions(self, model: str) -> list[str]:
        """The versions of ``model`` with any counts in this process."""
        with self._lock:
            return [version for name, version in self._stats if name == model]

    def get(self, model: str, version: str) -> ModelStatistics:
        """The counts of one version (all zero when it has none)."""
        with self._lock:
            entry = self._stats.get((model, version))
            if entry is None:
                return ModelStatistics(name=model, version=version)
            return entry.snapshot(model, version)
