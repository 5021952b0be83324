"""The composition root: builds every component once from :class:`~modelyard.settings.Settings`.

Nothing else wires components together; frontends, CLI commands and tests get a built
:class:`App` (or build one here) instead of constructing registries and caches themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.core.model_cache import CacheKey, Loader, ModelCache
from modelyard.core.observer import Observers
from modelyard.core.serving import ServingDataPlane
from modelyard.core.statistics import InferenceStatistics
from modelyard.registry.registry import Registry
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.frontends.asgi import Route
    from modelyard.frontends.rest import RestApp


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        allow_pickle=settings.allow_pickle,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
        graph_optimization_level=settings.onnx_graph_optimization,
        execution_providers=settings.onnx_providers,
    )


def make_loader(
    registry: Registry,
    options: RuntimeOptions,
    *,
    fetch_seconds: dict[CacheKey, float] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Loader:
    """The model cache's loader: resolve -> fetch (checksums verified) -> construct -> load.
    ``fetch_seconds`` receives each version's last fetch time (for cold-start timings)."""
    from modelyard.runtimes import get_runtime_class

    def load(key: CacheKey) -> Runtime:
        mv = registry.get_version(key.model, key.version)
        started = clock.monotonic()
        path = registry.fetch(mv)
        if fetch_seconds is not None:
            fetch_seconds[key] = clock.monotonic() - started
        runtime = get_runtime_class(mv.manifest.runtime)(path, mv.manifest, options)
        runtime.load()
        return runtime

    return load


BackgroundTask = Callable[[], Awaitable[None]]


@dataclass
class App:
    """Everything one server process runs, built once.

    Features plug in here, in :func:`build_app`, and nowhere else: they add REST ``routes``
    (mounted next to the V2 routes), ``observers`` (metrics, logs, payload logs, drift), long
    running ``background`` coroutines (started with the server, cancelled at shutdown),
    ``closers`` (run at shutdown, in reverse order), and may wrap ``dataplane`` (the API the
    frontends call, e.g. with traffic policies) around ``serving`` (the model-serving core).
    """

    settings: Settings
    registry: Registry
    cache: ModelCache
    serving: ServingDataPlane
    dataplane: DataPlane
    observers: Observers
    clock: Clock = SYSTEM_CLOCK
    routes: list[Route] = field(default_factory=list)
    background: list[BackgroundTask] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Objects features share with each other (e.g. "traffic": the TrafficDataPlane).
    extras: dict[str, object] = field(default_factory=dict)

    def rest_app(self) -> RestApp:
        from modelyard.frontends.rest import create_rest_app

        return create_rest_app(self.dataplane, self.settings, extra_routes=self.routes)

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.cache.close()
        self.serving.close()
        self.registry.close()


def build_app(settings: Settings, *, clock: Clock = SYSTEM_CLOCK, features: bool = True) -> App:
    """Build every component once. ``features=False`` builds only the serving core (registry,
    model cache, serving dataplane), for embedded use and offline jobs in someone else's process."""
    registry = Registry.from_settings(settings)
    fetch_seconds: dict[CacheKey, float] = {}
    cache = ModelCache(
        make_loader(registry, runtime_options(settings), fetch_seconds=fetch_seconds, clock=clock),
        budget_bytes=settings.cache_bytes,
        policy=settings.cache_policy,
        load_threads=settings.cache_load_threads,
        idle_ttl_s=settings.idle_unload_s,
        failure_ttl_s=settings.load_failure_ttl_s,
        clock=clock,
    )
    # Per-version statistics (Triton's statistics extension) are part of the protocol, not a
    # feature: always observed, first.
    statistics = InferenceStatistics(clock)
    observers = Observers([statistics])
    serving = ServingDataPlane(
        registry,
        cache,
        resolve_ttl_s=settings.resolve_ttl_s,
        inference_threads=settings.inference_threads,
        inline_predict_s=settings.inline_predict_us / 1e6,
        max_tensor_elements=settings.max_tensor_elements,
        clock=clock,
        observer=observers,
        statistics=statistics,
    )
    app = App(
        settings=settings,
        registry=registry,
        cache=cache,
        serving=serving,
        dataplane=serving,
        observers=observers,
        clock=clock,
        extras={"fetch_seconds": fetch_seconds},
    )
    for install in _features() if features else []:
        install(app)
    return app


def _features() -> list[Callable[[App], None]]:
    """Feature installers, applied in this order by :func:`build_app`. Each takes the App and
    plugs in (routes, observers, background tasks, a dataplane wrapper). Keep this the only
    list: monitoring first (it observes everything), traffic wraps the serving dataplane."""
    from modelyard.control import wiring as control
    from modelyard.core import fleet_wiring as fleet
    from modelyard.monitoring import wiring as monitoring
    from modelyard.traffic import wiring as traffic

    return [monitoring.install, fleet.install, traffic.install, control.install]


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    from modelyard.server import run_server

    return run_server(settings)
