"""Plugs metrics, logs, tracing, payload logs, drift, dashboard
into a server :class:`~modelyard.app.App` (listed in ``app._features``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.monitoring import multiproc

if TYPE_CHECKING:
    from modelyard.app import App

METRICS_PATH = "/metrics"
#: How often each process flushes its buffered request metrics and refreshes its sampled gauges
#: (memory, CPU, in-flight) between scrapes: with workers, a scrape reaches only one of them.
SAMPLE_PERIOD_S = 1.0


def install(app: App) -> None:
    """Add routes, observers, background tasks or a dataplane wrapper to ``app``."""
    settings = app.settings
    if settings.tracing:
        from modelyard.monitoring.tracing import configure_tracing

        app.closers.append(configure_tracing(otlp_endpoint=settings.otlp_endpoint))
    if settings.access_log_sample > 0:
        install_access_log(app)
    if settings.metrics:
        install_metrics(app)
    # Payload logging and drift sketches (after metrics: they register metrics of their own).
    from modelyard.monitoring import drift_wiring, ui_wiring

    drift_wiring.install(app)
    ui_wiring.install(app)  # the /ui dashboard


def install_access_log(app: App) -> None:
    """The sampled access log; its lines are written in batches, flushed periodically."""
    from modelyard.monitoring.logs import ACCESS_FLUSH_S, AccessLogObserver, flush_logs

    app.observers.add(AccessLogObserver(app.settings.access_log_sample))

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(ACCESS_FLUSH_S)
            flush_logs()

    app.background.append(flush_periodically)
    app.closers.append(flush_logs)


def install_metrics(app: App) -> None:
    """The metrics observer, ``GET /metrics``, and the periodic flush and gauge sampler.
    ``app.extras["metrics"]`` is the :class:`~modelyard.monitoring.metrics.Metrics`: other
    features register their own metrics in its ``registry``."""
    if app.settings.metrics_dir is not None:
        # before prometheus_client's first import
        multiproc.enable(app.settings.metrics_dir, app.settings.prometheus_multiproc_dir)
    from modelyard.monitoring.metrics import CONTENT_TYPE, Metrics, MetricsObserver

    metrics = Metrics(max_label_values=app.settings.metrics_max_label_values)
    serving = app.serving
    observer = MetricsObserver(metrics, cache=app.cache, in_flight=lambda: serving.in_flight)
    app.observers.add(observer)
    app.extras["metrics"] = metrics
    app.extras["metrics_observer"] = observer

    async def scrape(request: HttpRequest) -> HttpResponse:
        observer.sample()
        body = await asyncio.to_thread(metrics.render)
        return HttpResponse(200, body, CONTENT_TYPE)

    app.routes.append(Route("GET", METRICS_PATH, scrape))

    async def sample_periodically() -> None:
        while True:
            observer.sample()
            await asyncio.sleep(SAMPLE_PERIOD_S)

    app.background.append(sample_periodically)
