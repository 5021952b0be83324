"""Prometheus metrics: what the dataplane reports through its observer, served on ``/metrics``.

Every metric is listed with its labels and meaning in ``docs/metrics.md``. With ``--workers N``
prometheus-client runs in multiprocess mode (see :mod:`modelyard.monitoring.multiproc`): each
worker writes its values to mmap files and whichever worker answers a scrape aggregates them
all, so Prometheus sees one consistent server.

Cardinality stays bounded: a request whose model did not resolve (an unknown name, say) is
counted under ``model="_unknown"`` and never creates a series of its own, and each label keeps
at most ``max_label_values`` distinct values per process (later ones become ``"_other"``).

Other features add their own metrics to :attr:`Metrics.registry` (``app.extras["metrics"]``);
in multiprocess mode every metric of the process is exported whatever registry it names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from modelyard.core.model_cache import CacheState, ModelCache
from modelyard.core.observer import BatchEvent, CacheEvent, InferEvent, Observer
from modelyard.errors import ErrorCode
from modelyard.monitoring import multiproc
from modelyard.monitoring.metric_buffers import BufferedCounter, BufferedHistogram

__all__ = ["CONTENT_TYPE", "LabelLimiter", "Metrics", "MetricsObserver", "process_usage"]

#: The classic text format, which every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN = "_unknown"
OTHER = "_other"
NOT_FOUND = ErrorCode.NOT_FOUND.value

LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Cache kinds (CacheEvent.kind) that take a model out of the cache, and their reason label.
UNLOAD_REASONS = {"evict": "budget", "idle_unload": "idle", "unload": "unload"}
_MAX_CACHED_SERIES = 10_000
# A buffered pair, or the bare label children once the cache is full (written at once).
_RequestSeries = tuple[Any, Any]
_BatchSeries = tuple[Any, Any, Any]


class LabelLimiter:
    """Bounds the distinct values of one label: the first ``limit`` values seen are kept,
    later ones are reported as ``"_other"``."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    """The metric families of one server process, registered in :attr:`registry`."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_label_values: int = 200
    ) -> None:
        # *_created series (one more per counter and histogram) say when a series appeared:
        # nothing we need, twice the series Prometheus stores.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiproc.is_multiprocess()
        self.endpoints = LabelLimiter(max_label_values)
        self.models = LabelLimiter(max_label_values)
        self.versions = LabelLimiter(max_label_values)
        self.routes = LabelLimiter(max_label_values)
        self.shadows = LabelLimiter(max_label_values)
        req = ("endpoint", "model", "version", "route")
        mv = ("model", "version")
        self.requests = Counter(
            "modelyard_requests", "Finished inference requests.", (*req, "code"), registry=r
        )
        self.request_duration = Histogram(
            "modelyard_request_duration_seconds",
            "Time from the dataplane receiving a request to its answer (or error).",
            req,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.endpoint_responses = Counter(
            "modelyard_endpoint_responses",
            "Requests to endpoints by what their clients got: code, and what answered (route, "
            "fallback, cache, or none for an error).",
            ("endpoint", "code", "source"),
            registry=r,
        )
        self.endpoint_duration = Histogram(
            "modelyard_endpoint_response_duration_seconds",
            "Time an endpoint took to answer its client (cache hits and fallbacks included).",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "modelyard_fallbacks",
            "Endpoint requests answered by the fallback chain.",
            ("endpoint", "reason"),
            registry=r,
        )
        self.hedges = Counter(
            "modelyard_hedges",
            "Endpoint requests whose first copy outlived the hedge delay, by what happened.",
            ("endpoint", "outcome"),
            registry=r,
        )
        self.shadow_comparisons = Counter(
            "modelyard_shadow_comparisons",
            "Shadow answers compared with the primary's.",
            ("endpoint", "shadow", "outcome"),
            registry=r,
        )
        self.response_cache_hits = Counter(
            "modelyard_response_cache_hits", "Response-cache hits.", ("endpoint",), registry=r
        )
        self.response_cache_misses = Counter(
            "modelyard_response_cache_misses", "Response-cache misses.", ("endpoint",), registry=r
        )
        self.model_loads = Counter(
            "modelyard_model_loads", "Model versions loaded into the model cache.", mv, registry=r
        )
        self.model_load_failures = Counter(
            "modelyard_model_load_failures", "Model loads that failed.", mv, registry=r
        )
        self.model_evictions = Counter(
            "modelyard_model_evictions",
            "Model versions taken out of the model cache (reason: budget, idle, unload).",
            (*mv, "reason"),
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "modelyard_model_load_seconds",
            "Time to fetch, load and warm up a model version.",
            ("model",),
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "modelyard_queue_wait_seconds",
            "Wait of a batch's oldest request before its predict call started.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelyard_batch_size",
            "Rows per predict call.",
            mv,
            buckets=BATCH_ROWS_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "modelyard_inference_duration_seconds",
            "Duration of one predict call (one batch).",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "modelyard_in_flight_requests",
            "Requests inside the dataplane now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.loaded_models = Gauge(
            "modelyard_loaded_models",
            "Model versions loaded in the model cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_cache_bytes = Gauge(
            "modelyard_model_cache_bytes",
            "Bytes used by the loaded model versions.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_cache_budget_bytes = Gauge(
            "modelyard_model_cache_budget_bytes",
            "Byte budget of the model cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.resident_memory = Gauge(
            "modelyard_process_resident_memory_bytes",
            "Resident memory of the server process (per worker: label pid).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.cpu_seconds = Gauge(
            "modelyard_process_cpu_seconds",
            "CPU time (user + system) used by the server process (per worker: label pid).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._exposed = self._exposition_registries()

    def _exposition_registries(self) -> list[CollectorRegistry]:
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            aggregated = CollectorRegistry()
            MultiProcessCollector(aggregated)  # type: ignore[no-untyped-call]
            return [aggregated]
        # One process: this app's metrics plus the default registry (process_*, python_*).
        return [self.registry, REGISTRY]

    def render(self) -> bytes:
        """The text exposition format served on ``/metrics`` (blocking: reads metric files)."""
        return b"".join(generate_latest(r) for r in self._exposed)


class MetricsObserver(Observer):
    """Feeds :class:`Metrics` from dataplane, batcher, model-cache and traffic events.

    Requests and batches are on the hot path: their label children are looked up once per
    (endpoint, model, version, route, code) and their values counted in buffers
    (:mod:`~modelyard.monitoring.metric_buffers`) that :meth:`flush` hands over in bulk; the
    server flushes before each scrape and once a second. Events may come from any thread."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        cache: ModelCache | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.metrics = metrics
        self._cache = cache
        self._in_flight = in_flight
        self._lock = threading.Lock()
        self._request_series: dict[tuple[str, ...], _RequestSeries] = {}
        self._batch_series: dict[tuple[str, str], _BatchSeries] = {}
        #: (endpoint, code, source) -> its children; on_answer runs on the event loop only.
        self._answer_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._buffers: list[BufferedCounter | BufferedHistogram] = []

    def flush(self) -> None:
        """Add the buffered request and batch values to the Prometheus metrics."""
        with self._lock:
            for buffer in self._buffers:
                buffer.flush()

    # ---- requests ---------------------------------------------------------------------------
    def on_infer(self, event: InferEvent) -> None:
        key = (event.endpoint, event.model, event.version, event.route, event.code)
        with self._lock:
            series = self._request_series.get(key)
            if series is None:
                series = self._new_request_series(key)
            series[0].inc()
            series[1].observe(event.latency_s)

    def _new_request_series(self, key: tuple[str, ...]) -> _RequestSeries:
        endpoint, model, version, route, code = key
        m = self.metrics
        if not version or code == NOT_FOUND:  # the name did not resolve: maybe not a model
            endpoint = UNKNOWN if endpoint == model else m.endpoints(endpoint)
            model, version = UNKNOWN, ""
        else:
            endpoint, model, version = m.endpoints(endpoint), m.models(model), m.versions(version)
        route = m.routes(route)
        counter = m.requests.labels(endpoint, model, version, route, code)
        histogram = m.request_duration.labels(endpoint, model, version, route)
        if len(self._request_series) >= _MAX_CACHED_SERIES:
            return counter, histogram  # unbuffered: written at once
        series = (BufferedCounter(counter), BufferedHistogram(histogram))
        self._request_series[key] = series
        self._buffers += series
        return series

    # ---- batches ----------------------------------------------------------------------------
    def on_batch(self, event: BatchEvent) -> None:
        key = (event.model, event.version)
        with self._lock:
            series = self._batch_series.get(key)
            if series is None:
                series = self._new_batch_series(key)
            series[0].observe(event.queue_wait_s)
            series[1].observe(event.rows)
            series[2].observe(event.infer_s)

    def _new_batch_series(self, key: tuple[str, str]) -> _BatchSeries:
        m = self.metrics
        labels = (m.models(key[0]), m.versions(key[1]))
        children = (
            m.queue_wait.labels(*labels),
            m.batch_size.labels(*labels),
            m.inference_duration.labels(*labels),
        )
        if len(self._batch_series) >= _MAX_CACHED_SERIES:
            return children
        series = (
            BufferedHistogram(children[0]),
            BufferedHistogram(children[1]),
            BufferedHistogram(children[2]),
        )
        self._batch_series[key] = series
        self._buffers += series
        return series

    # ---- model cache ------------------------------------------------------------------------
    def on_cache(self, event: CacheEvent) -> None:
        m = self.metrics
        model, version = m.models(event.model), m.versions(event.version)
        if event.kind == "load":
            m.model_loads.labels(model, version).inc()
            m.model_load_seconds.labels(model).observe(event.seconds)
        elif event.kind == "load_failure":
            m.model_load_failures.labels(model, version).inc()
        elif event.kind in UNLOAD_REASONS:
            m.model_evictions.labels(model, version, UNLOAD_REASONS[event.kind]).inc()
        self.sample_cache()

    def sample_cache(self) -> None:
        if self._cache is None:
            return
        stats = self._cache.stats
        loaded = sum(1 for e in self._cache.entries() if e.state is CacheState.READY)
        self.metrics.loaded_models.set(loaded)
        self.metrics.model_cache_bytes.set(stats.bytes_in_use)
        self.metrics.model_cache_budget_bytes.set(stats.budget_bytes)

    # ---- traffic ----------------------------------------------------------------------------
    def on_fallback(self, endpoint: str, reason: str) -> None:
        self.metrics.fallbacks.labels(self.metrics.endpoints(endpoint), reason).inc()

    def on_answer(self, endpoint: str, code: str, source: str, latency_s: float) -> None:
        key = (endpoint, code, source)
        series = self._answer_series.get(key)  # per request: no label lookups once seen
        if series is None:
            m = self.metrics
            name = m.endpoints(endpoint)
            series = (
                m.endpoint_responses.labels(name, code, source),
                m.endpoint_duration.labels(name),
            )
            if len(self._answer_series) < _MAX_CACHED_SERIES:
                self._answer_series[key] = series
        series[0].inc()
        series[1].observe(latency_s)

    def on_cache_lookup(self, endpoint: str, hit: bool) -> None:
        m = self.metrics
        counter = m.response_cache_hits if hit else m.response_cache_misses
        counter.labels(m.endpoints(endpoint)).inc()

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        """One shadow answer compared with the primary (``outcome``: e.g. match, mismatch,
        error, dropped)."""
        m = self.metrics
        m.shadow_comparisons.labels(m.endpoints(endpoint), m.shadows(shadow), outcome).inc()

    def on_hedge(self, endpoint: str, outcome: str) -> None:
        """A request outlived its hedge delay: a second copy was ``sent``, or ``over_budget``."""
        self.metrics.hedges.labels(self.metrics.endpoints(endpoint), outcome).inc()

    # ---- sampled gauges ---------------------------------------------------------------------
    def sample(self) -> None:
        """Flush the buffered values and refresh the gauges that are read, not counted:
        in-flight requests, the model cache, process memory and CPU. Called before each scrape
        and periodically."""
        self.flush()
        if self._in_flight is not None:
            self.metrics.in_flight.set(self._in_flight())
        self.sample_cache()
        rss, cpu = process_usage()
        self.metrics.resident_memory.set(rss)
        self.metrics.cpu_seconds.set(cpu)


def process_usage() -> tuple[int, float]:
    """(resident bytes, CPU seconds) of this process; RSS is 0 where /proc is missing."""
    times = os.times()
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    return rss, times.user + times.system
