"""Plugs serving stats, shadows, the rollout view and the controller into a server
:class:`~modelyard.app.App` (listed in ``app._features``, after the traffic layer).

* a :class:`~modelyard.traffic.stats.StatsCollector` observes every request; a background task
  writes its intervals to the registry (and a closer writes the last, partial one at shutdown);
* a :class:`~modelyard.control.rollout_view.RegistryRolloutView` and a
  :class:`~modelyard.traffic.shadow.ShadowRunner` are handed to the traffic layer: published in
  ``app.extras`` (``"rollout_view"``, ``"shadows"``, ``"stats"``) and set on the traffic
  dataplane (``app.extras["traffic"]``) when it has ``rollout_view`` / ``shadows`` attributes;
* with ``settings.controller``, the controller loop runs as a background task (it acts only
  while it holds the registry's controller lease) and gives the lease up at shutdown; each of
  its rounds also starts syncing the models that follow an MLflow alias
  (:mod:`modelyard.control.mlflow_follow`) on a thread that the round does not wait for.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from modelyard.control.controller import Controller
from modelyard.control.mlflow_follow import MlflowFollower
from modelyard.control.rollout_view import RegistryRolloutView
from modelyard.core.observer import Observer, Observers
from modelyard.registry.mlflow_source import MlflowSource
from modelyard.traffic.shadow import ShadowRunner
from modelyard.traffic.shadow_process import ProcessShadows
from modelyard.traffic.stats import StatsCollector, replica_name
from modelyard.traffic.stats_store import StatsWriter

if TYPE_CHECKING:
    from modelyard.app import App

log = logging.getLogger("modelyard.controller")


def install(app: App) -> None:
    """Add the stats observer, shadows, rollout view and controller to ``app``."""
    settings = app.settings
    replica = replica_name(settings)
    collector = StatsCollector(
        interval_s=settings.stats_interval_s, replica=replica, clock=app.clock
    )
    app.observers.add(collector)
    writer = StatsWriter(app.registry, collector, clock=app.clock)
    app.background.append(writer.run)

    def final_flush() -> None:
        try:
            writer.flush(everything=True)
        except Exception as exc:
            log.warning("writing the last serving stats failed: %s", exc)

    app.closers.append(final_flush)

    view = RegistryRolloutView(app.registry, refresh_s=settings.watch_interval_s)
    app.background.append(view.run)
    resolver = app.serving.resolver

    def resolve_cached(model: str, ref: str | None) -> int | None:
        found = resolver.cached(model, ref)
        return None if found is None else found.version

    executor = None
    if settings.shadow_isolation == "process":
        # Shadow requests count in serving stats and metrics; logs, payload logs and drift
        # describe the traffic clients sent.
        counted: list[Observer] = [collector]
        metrics = app.extras.get("metrics_observer")
        if isinstance(metrics, Observer):
            counted.append(metrics)
        executor = ProcessShadows(settings, collector, Observers(counted), clock=app.clock)
        app.closers.append(executor.close)  # closers run in reverse: before final_flush
    shadows = ShadowRunner(
        app.serving,
        collector,
        max_concurrency=settings.shadow_max_concurrency,
        clock=app.clock,
        resolve_cached=resolve_cached,
        max_busy=settings.shadow_max_loop_busy,
        executor=executor,
        observer=app.observers,
    )
    app.extras.update(stats=collector, rollout_view=view, shadows=shadows)
    traffic = app.extras.get("traffic")
    for name, hook in (("rollout_view", view), ("shadows", shadows)):
        if traffic is not None and hasattr(traffic, name):
            setattr(traffic, name, hook)

    if settings.controller:
        follower = MlflowFollower(
            app.registry,
            interval_s=settings.mlflow_sync_interval_s,
            tracking_uri=settings.mlflow_tracking_uri,
            allow_pickle=settings.allow_pickle,
            clock=app.clock,
            source_for=functools.partial(
                MlflowSource,
                timeout_s=settings.mlflow_timeout_s,
                max_retries=settings.mlflow_max_retries,
            ),
        )
        controller = Controller(
            app.registry,
            holder=replica,
            interval_s=settings.controller_interval_s,
            stats_interval_s=settings.stats_interval_s,
            on_change=view.refresh,
            passes=[follower.start],  # syncs on a thread of its own: MLflow never holds a round
        )
        app.extras["controller"] = controller
        app.background.append(controller.run)
        app.closers.append(controller.release)
        app.closers.append(follower.close)
