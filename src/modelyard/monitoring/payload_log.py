"""Payload logging: sampled request/response pairs, written off the hot path.

* **Sampling** is a pure function of the request id (:func:`is_sampled`), so every replica and
  every test agrees on which requests are logged. The rate comes from
  :class:`PayloadRates`: ``payload_log_rates[endpoint]``, then ``payload_log_rates[model]``, then
  the model's metadata ``payload_log_rate``, then ``payload_log_rate``.
* **On the hot path** :class:`PayloadLogger` (an Observer) only samples and puts the event on a
  bounded queue; when the queue is full the record is dropped and counted (``dropped``).
* **A writer thread** drains the queue in batches, drops redacted tensors
  (``payload_log_redact``), encodes records and hands them to a sink
  (:mod:`modelyard.monitoring.payload_sinks`: rotating JSONL or Parquet files, a Redis stream).
* :meth:`PayloadLogger.close` (an App closer) writes everything accepted before returning.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.registry.registry import Registry
from modelyard.types import Array, Datatype

log = logging.getLogger("modelyard.payload_log")

RATE_KEY = "payload_log_rate"  # model metadata key overriding the default rate
BATCH = 256  # records handed to the sink at once


def sample_point(request_id: str) -> float:
    """Where ``request_id`` falls in [0, 1): a stable hash, the same in every process."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def is_sampled(request_id: str, rate: float) -> bool:
    """True when a request with this id is payload-logged at ``rate``."""
    if rate <= 0.0:
        return False
    return rate >= 1.0 or sample_point(request_id) < rate


class PayloadRates:
    """The fraction of requests logged per endpoint or model.

    ``overrides`` (the ``payload_log_rates`` setting) wins, by endpoint name, then model name;
    then the model metadata key ``payload_log_rate`` (picked up by :meth:`refresh`); then
    ``default``.
    """

    def __init__(self, default: float, overrides: Mapping[str, float] | None = None) -> None:
        self.default = default
        self.overrides = dict(overrides or {})
        self._from_metadata: dict[str, float] = {}

    def rate(self, endpoint: str, model: str) -> float:
        found = self.overrides.get(endpoint)
        if found is None:
            found = self.overrides.get(model)
        if found is None:
            found = self._from_metadata.get(model, self.default)
        return found

    def set_model_rates(self, rates: Mapping[str, float]) -> None:
        self._from_metadata = dict(rates)  # replaced whole: readers never see a half update

    def refresh(self, registry: Registry) -> None:
        """Re-read ``payload_log_rate`` from every model's metadata (ignoring bad values)."""
        rates: dict[str, float] = {}
        for info in registry.list_models():
            value = info.metadata.get(RATE_KEY)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                log.warning("model %s: metadata %s=%r is not a number", info.name, RATE_KEY, value)
            elif not 0.0 <= value <= 1.0:
                log.warning("model %s: metadata %s=%r is not in [0, 1]", info.name, RATE_KEY, value)
            else:
                rates[info.name] = float(value)
        self.set_model_rates(rates)


# ---- records ---------------------------------------------------------------------------------
def encode_tensor(array: Array) -> dict[str, Any]:
    """A tensor as JSON-ready data: datatype, shape, flat data. BYTES elements are UTF-8
    strings, or base64 (with ``"encoding": "base64"``) when any is not valid UTF-8."""
    array = np.asarray(array)
    try:
        datatype = Datatype.from_numpy(array.dtype).value
    except ValueError:
        datatype = str(array.dtype)
    doc: dict[str, Any] = {"datatype": datatype, "shape": list(array.shape)}
    if array.dtype.kind in "OSU":
        items = [x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)]
        try:
            doc["data"] = [x.decode("utf-8") for x in items]
        except UnicodeDecodeError:
            doc["data"] = [base64.b64encode(x).decode("ascii") for x in items]
            doc["encoding"] = "base64"
    else:
        doc["data"] = [_finite(x) for x in array.reshape(-1).tolist()]
    return doc


def _finite(value: Any) -> Any:
    """NaN and infinities as strings: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def encode_tensors(tensors: Mapping[str, Array], redact: frozenset[str]) -> dict[str, Any]:
    return {name: encode_tensor(a) for name, a in tensors.items() if name not in redact}


def encode_record(event: InferEvent, ts: float, redact: frozenset[str]) -> dict[str, Any]:
    """The logged form of one request/response pair (redacted tensors left out)."""
    response = event.response
    return {
        "ts": ts,
        "request_id": event.ctx.request_id,
        "endpoint": event.endpoint,
        "model": event.model,
        "version": event.version,
        "route": event.route,
        "code": event.code,
        "latency_ms": round(event.latency_s * 1000.0, 3),
        "parameters": _plain(event.request.parameters),
        "inputs": encode_tensors(event.request.inputs, redact),
        "outputs": {} if response is None else encode_tensors(response.outputs, redact),
    }


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool)}


class PayloadSink(Protocol):
    """Where encoded records go. Called from the writer thread only."""

    def write(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def close(self) -> None:
        """Flush and release; records written before must be durable afterwards."""
        ...


_Item = tuple[float, InferEvent]


class PayloadLogger(Observer):
    """Samples finished requests onto a bounded queue; a writer thread feeds the sink.

    Counters (read them any time): ``dropped`` (queue full, or arrived after close),
    ``written`` (records the sink accepted), ``failed`` (records lost to a sink error).
    ``on_drop`` is called (with the number dropped) on the hot path, e.g. to bump a metric.
    """

    def __init__(
        self,
        sink: PayloadSink,
        rates: PayloadRates,
        *,
        redact: Iterable[str] = (),
        queue_size: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.rates = rates
        self.redact = frozenset(redact)
        self.clock = clock
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._lock = threading.Lock()
        self._closed = False
        self._accepted = 0
        self._done = 0
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="modelyard-payload-log", daemon=True)
        self._thread.start()

    # ---- hot path -----------------------------------------------------------------------------
    def on_infer(self, event: InferEvent) -> None:
        rate = self.rates.rate(event.endpoint, event.model)
        if rate <= 0.0 or not is_sampled(event.ctx.request_id, rate):
            return
        item = (self.clock.wall(), event)
        with self._lock:
            if not self._closed:
                try:
                    self._queue.put_nowait(item)
                    self._accepted += 1
                    return
                except queue.Full:
                    pass
            self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(1)

    # ---- writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Item] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        records = []
        for ts, event in batch:
            try:
                records.append(encode_record(event, ts, self.redact))
            except Exception:
                log.exception("payload record of request %s not encodable", event.ctx.request_id)
                self.failed += 1
        if records:
            try:
                self.sink.write(records)
                self.written += len(records)
            except Exception:
                log.exception("payload sink failed; %d records lost", len(records))
                self.failed += len(records)
        with self._progress:
            self._done += len(batch)
            self._progress.notify_all()

    # ---- flushing -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far has been handed to the sink; False on timeout."""
        with self._lock:
            target = self._accepted
        with self._progress:
            return self._progress.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, write everything accepted, close the sink. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("payload log writer is stuck; %d records not written", self._queue.qsize())
        self._thread.join(timeout)
        if self._thread.is_alive():  # the sink hangs: closing it under the writer is unsafe
            log.error("payload log writer did not finish in %.0f s; sink left open", timeout)
            return
        self.sink.close()
