"""The composition root: builds every component once from :class:`~modelyard.settings.Settings`.

Nothing else wires components together; frontends, CLI commands and tests get a built
:class:`App` (or build one here) instead of constructing registries and caches themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.model_cache import CacheKey, Loader, ModelCache
from modelyard.core.serving import ServingDataPlane
from modelyard.registry.registry import Registry
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.frontends.rest import RestApp


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        allow_pickle=settings.allow_pickle,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
        graph_optimization_level=settings.onnx_graph_optimization,
        execution_providers=settings.onnx_providers,
    )


def make_loader(registry: Registry, options: RuntimeOptions) -> Loader:
    """The model cache's loader: resolve -> fetch (checksums verified) -> construct -> load."""
    from modelyard.runtimes import get_runtime_class

    def load(key: CacheKey) -> Runtime:
        mv = registry.get_version(key.model, key.version)
        path = registry.fetch(mv)
        runtime = get_runtime_class(mv.manifest.runtime)(path, mv.manifest, options)
        runtime.load()
        return runtime

    return load


@dataclass
class App:
    """Everything one server process runs, built once."""

    settings: Settings
    registry: Registry
    cache: ModelCache
    dataplane: ServingDataPlane

    def rest_app(self) -> RestApp:
        from modelyard.frontends.rest import create_rest_app

        return create_rest_app(self.dataplane, self.settings)

    def close(self) -> None:
        self.cache.close()
        self.dataplane.close()
        self.registry.close()


def build_app(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> App:
    registry = Registry.from_settings(settings)
    cache = ModelCache(
        make_loader(registry, runtime_options(settings)),
        budget_bytes=settings.cache_bytes,
        idle_ttl_s=settings.idle_unload_s,
        failure_ttl_s=settings.load_failure_ttl_s,
        clock=clock,
    )
    dataplane = ServingDataPlane(
        registry,
        cache,
        resolve_ttl_s=settings.resolve_ttl_s,
        inference_threads=settings.inference_threads,
        max_tensor_elements=settings.max_tensor_elements,
        clock=clock,
    )
    return App(settings=settings, registry=registry, cache=cache, dataplane=dataplane)


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    from modelyard.server import run_server

    return run_server(settings)
