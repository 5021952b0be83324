"""Plugs payload logging and drift detection into a server :class:`~modelyard.app.App`.

* ``payload_log`` set: a :class:`~modelyard.monitoring.payload_log.PayloadLogger` observer (its
  writer thread is flushed by an App closer) and a background task that re-reads per-model
  ``payload_log_rate`` metadata every ``watch_interval_s``.
* Always: a :class:`~modelyard.monitoring.sketches.DriftAggregator` observer writing this
  replica's sketches every ``stats_interval_s`` (only versions with a ``drift_reference`` cost
  anything), and, with ``controller`` on, a :class:`DriftController` that computes reports every
  ``drift_interval_s`` while this process holds the controller lease.
* When the metrics feature is installed (``app.extras["metrics"]``), drop counters and drift
  gauges are registered in its Prometheus registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from modelyard.control.lease import CONTROLLER_LEASE, try_acquire
from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.monitoring import drift
from modelyard.monitoring.drift_reports import DEFAULT_SKETCH_INTERVAL_S, run_drift_pass
from modelyard.monitoring.payload_log import PayloadLogger, PayloadRates
from modelyard.monitoring.sketches import DriftAggregator
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic.stats import replica_name  # one name per process, shared with stats

if TYPE_CHECKING:
    from modelyard.app import App

log = logging.getLogger("modelyard.drift")

STATUS_VALUE = {"insufficient_data": -1.0, "ok": 0.0, "warn": 1.0, "alarm": 2.0}


def thresholds(settings: Settings) -> drift.Thresholds:
    return drift.Thresholds(
        psi_alarm=settings.drift_psi_alarm,
        ks_alarm=settings.drift_ks_alarm,
        min_rows=settings.drift_min_rows,
    )


class DriftController:
    """Computes drift reports every ``interval_s``, only while holding the controller lease.

    ``holder`` must be the name the process's other controller duties use for the same lease
    (so they renew, not fight, each other); ``on_reports`` receives each pass's reports.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        holder: str,
        interval_s: float,
        window_s: float,
        sketch_interval_s: float = DEFAULT_SKETCH_INTERVAL_S,
        limits: drift.Thresholds = drift.DEFAULT_THRESHOLDS,
        lease_ttl_s: float = 15.0,
        clock: Clock = SYSTEM_CLOCK,
        on_reports: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.holder = holder
        self.interval_s = interval_s
        self.window_s = window_s
        self.sketch_interval_s = sketch_interval_s
        #: ``now`` of this process's last pass: the next one judges every interval ended since.
        self.last_pass: float | None = None
        self.limits = limits
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        self.on_reports = on_reports

    def run_once(self) -> list[dict[str, Any]] | None:
        """One pass; None when another process holds the controller lease."""
        if not try_acquire(self.registry, CONTROLLER_LEASE, self.holder, self.lease_ttl_s):
            return None
        now = self.clock.wall()
        reports = run_drift_pass(
            self.registry,
            now=now,
            window_s=self.window_s,
            since=self.last_pass,
            sketch_interval_s=self.sketch_interval_s,
            thresholds=self.limits,
        )
        self.last_pass = now
        if self.on_reports is not None:
            self.on_reports(reports)
        return reports

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("drift pass failed")


class DriftMetrics:
    """Prometheus series of this feature, in the metrics feature's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        self.payload_dropped = Counter(
            "modelyard_payload_log_dropped",
            "Sampled payload-log records dropped because the queue was full.",
            registry=registry,
        )
        self.sketch_dropped = Counter(
            "modelyard_drift_sketch_dropped",
            "Requests left out of drift sketches because the queue was full.",
            registry=registry,
        )
        mvf = ("model", "version", "feature")
        self.psi = Gauge(
            "modelyard_drift_psi",
            "PSI of a feature against the version's reference (last drift report).",
            mvf,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.ks = Gauge(
            "modelyard_drift_ks",
            "Binned KS statistic of a numeric feature (last drift report).",
            mvf,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.status = Gauge(
            "modelyard_drift_status",
            "Drift status of a version: -1 insufficient data, 0 ok, 1 warn, 2 alarm.",
            ("model", "version"),
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def set_reports(self, reports: list[dict[str, Any]]) -> None:
        for report in reports:
            model, version = report["model"], str(report["version"])
            self.status.labels(model, version).set(STATUS_VALUE[report["status"]])
            for section in ("inputs", "outputs"):
                for row in report[section]:
                    feature = f"{section}:{row['feature']}"
                    self.psi.labels(model, version, feature).set(row["psi"])
                    if row["ks"] is not None:
                        self.ks.labels(model, version, feature).set(row["ks"])


def install(app: App) -> None:
    """Add the payload logger, the drift aggregator and the drift controller to ``app``."""
    settings = app.settings
    replica = replica_name(settings)
    payload = _install_payload_log(app, replica) if settings.payload_log else None

    aggregator = DriftAggregator(
        app.registry,
        replica,
        interval_s=settings.stats_interval_s,
        queue_size=settings.drift_queue,
        clock=app.clock,
    )
    app.observers.add(aggregator)
    aggregator.start()
    app.closers.append(aggregator.close)
    app.extras["drift_aggregator"] = aggregator

    controller: DriftController | None = None
    if settings.controller:
        controller = DriftController(
            app.registry,
            holder=replica,
            interval_s=settings.drift_interval_s,
            window_s=settings.drift_window_s or settings.drift_interval_s,
            sketch_interval_s=settings.stats_interval_s,
            limits=thresholds(settings),
            lease_ttl_s=3 * settings.controller_interval_s,
            clock=app.clock,
        )
        app.background.append(controller.run)
        app.extras["drift_controller"] = controller

    async def on_start() -> None:
        # Features installed after this one are there once serving: the metrics registry, and
        # the control feature's controller, whose lease holder name this one must share.
        if controller is not None:
            controller.holder = str(getattr(app.extras.get("controller"), "holder", replica))
        _attach_metrics(app.extras.get("metrics"), payload, aggregator, controller)

    app.background.append(on_start)


def _install_payload_log(app: App, replica: str) -> PayloadLogger:
    from modelyard.monitoring.payload_sinks import open_sink

    settings = app.settings
    rates = PayloadRates(settings.payload_log_rate, settings.payload_log_rates)
    payload = PayloadLogger(
        open_sink(settings, replica, app.clock),
        rates,
        redact=settings.payload_log_redact,
        queue_size=settings.payload_log_queue,
        clock=app.clock,
    )
    app.observers.add(payload)
    app.closers.append(payload.close)
    app.background.append(_refresh_rates(app.registry, rates, settings.watch_interval_s))
    app.extras["payload_log"] = payload
    return payload


def _attach_metrics(
    metrics: object,
    payload: PayloadLogger | None,
    aggregator: DriftAggregator,
    controller: DriftController | None,
) -> None:
    registry = getattr(metrics, "registry", None)
    if registry is None:
        return
    series = DriftMetrics(registry)
    if payload is not None:
        series.payload_dropped.inc(payload.dropped)
        payload.on_drop = series.payload_dropped.inc
    series.sketch_dropped.inc(aggregator.dropped)
    aggregator.on_drop = series.sketch_dropped.inc
    if controller is not None:
        controller.on_reports = series.set_reports


def _refresh_rates(
    registry: Registry, rates: PayloadRates, every_s: float
) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        while True:
            try:
                await asyncio.to_thread(rates.refresh, registry)
            except Exception:
                log.exception("reading payload_log_rate metadata failed")
            await asyncio.sleep(every_s)

    return refresh
