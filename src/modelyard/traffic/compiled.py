"""An endpoint's traffic policy composed once, when its spec loads, not re-decided per request:
its routes (with the rollout's candidate), which of them cascade, its timeout, response cache,
hedge budget and latency windows, and the static fallback tensors, already built."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelyard.core.clock import Clock
from modelyard.traffic.cascade import applies_to
from modelyard.traffic.fallback import static_outputs
from modelyard.traffic.hedging import HedgeLimiter, LatencyWindow
from modelyard.traffic.response_cache import ResponseCache
from modelyard.traffic.routing import primary_route, routes_of
from modelyard.traffic.spec import EndpointSpec, Route, VersionRef
from modelyard.traffic.spec import ResponseCache as CacheSpec
from modelyard.types import Array


def version_ref(version: VersionRef) -> str | None:
    """A spec's version reference as the dataplane takes it (digits, an alias, or None)."""
    return None if version is None else str(version)


@dataclass(slots=True, frozen=True)
class CompiledRoute:
    route: Route
    ref: str | None
    cascade: bool


@dataclass(slots=True)
class CompiledEndpoint:
    spec: EndpointSpec
    revision: int
    routes: tuple[Route, ...]
    by_name: dict[str, CompiledRoute]
    primary: Route
    timeout_s: float | None
    cache: ResponseCache | None
    serve_from_cache: bool
    check_nonfinite: bool
    hedge: HedgeLimiter | None
    statics: dict[int, dict[str, Array]]
    windows: dict[tuple[str, str | None], LatencyWindow] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def window(self, model: str, ref: str | None) -> LatencyWindow:
        """Recent latencies of one target of this endpoint (for the hedge delay)."""
        found = self.windows.get((model, ref))
        if found is None:
            found = self.windows[(model, ref)] = LatencyWindow()
        return found


def compile_endpoint(spec: EndpointSpec, revision: int, clock: Clock) -> CompiledEndpoint:
    """Build the runtime form of ``spec``. Raises InvalidInputError for a malformed static
    fallback (the store refuses those at apply, so only hand-edited rows get here)."""
    routes = routes_of(spec)
    by_name = {
        r.name: CompiledRoute(r, version_ref(r.version), applies_to(spec.cascade, r))
        for r in routes
    }
    fallback = spec.fallback
    chain = fallback.chain if fallback is not None else ()
    statics = {
        i: static_outputs(step, f"fallback.chain.{i}")
        for i, step in enumerate(chain)
        if step.kind == "static"
    }
    needs_last_good = any(step.kind == "last_good" for step in chain)
    cache_spec = spec.cache or (CacheSpec() if needs_last_good else None)
    cache = (
        ResponseCache(ttl_s=cache_spec.ttl_s, max_bytes=cache_spec.max_bytes, clock=clock)
        if cache_spec is not None
        else None
    )
    return CompiledEndpoint(
        spec=spec,
        revision=revision,
        routes=routes,
        by_name=by_name,
        primary=primary_route(spec),
        timeout_s=None if spec.timeout_ms is None else spec.timeout_ms / 1000.0,
        cache=cache,
        serve_from_cache=spec.cache is not None,
        check_nonfinite=fallback is not None and "nonfinite" in fallback.on,
        hedge=HedgeLimiter(spec.hedging) if spec.hedging is not None else None,
        statics=statics,
    )
