"""The traffic dataplane: endpoints called exactly like models, in front of the serving core.

For a name that is an endpoint (and no explicit version), a request takes these steps:
choose a route (pure :func:`~modelyard.traffic.routing.pick_route`; sticky by key), hand a copy
to the shadows, answer from the response cache or the route's model (through the cascade when
it applies, hedged when configured) within the endpoint's timeout, and on a timeout, a
server-side error or NaN/Inf outputs walk the fallback chain. Every answer is annotated in
``parameters``: ``route``, ``answered_by`` (``model:version``), and when they apply
``fallback`` (the reason), ``fallback_step``, ``cache`` (``hit``) and ``cascade``.

Any other name, and any call with an explicit version, goes straight to the inner dataplane:
an endpoint named like a model wins for ``/v2/models/{name}/infer``, while
``/v2/models/{name}/versions/{v}/infer`` still reaches version ``v`` of the model itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import CANCELLED, Observer
from modelyard.errors import ErrorCode, ModelYardError
from modelyard.monitoring import tracing
from modelyard.registry.endpoints import EndpointRecord
from modelyard.traffic.compiled import CompiledEndpoint, compile_endpoint, version_ref
from modelyard.traffic.materialized import MaterializedTables
from modelyard.traffic.responder import Responder, VersionResolver
from modelyard.traffic.routing import pick_route, random_bucket, routing_key, sticky_bucket
from modelyard.traffic.shadow_hook import ShadowDispatcher
from modelyard.traffic.spec import Route
from modelyard.traffic.state import RolloutView
from modelyard.types import (
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelStatistics,
    RepositoryEntry,
    RequestContext,
    ServerMetadata,
)

log = logging.getLogger("modelyard.traffic")


class TrafficDataPlane(DataPlane):
    """Wraps the serving dataplane with endpoints and their traffic policies.

    ``rollout_view`` and ``shadows`` are plain attributes: the control feature installs after
    the traffic feature and sets them.
    """

    def __init__(
        self,
        inner: DataPlane,
        *,
        resolve: VersionResolver,
        observer: Observer | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rollout_view: RolloutView | None = None,
        shadows: ShadowDispatcher | None = None,
        rng: Callable[[], float] = random.random,
        tables: MaterializedTables | None = None,
    ) -> None:
        self.inner = inner
        self._resolve = resolve
        self.rollout_view = rollout_view
        self.shadows = shadows
        self._observer = observer if observer is not None else Observer()
        self._responder = Responder(inner, resolve, self._observer, clock, tables)
        self._clock = clock
        self._rng = rng
        self._endpoints: dict[str, CompiledEndpoint] = {}

    # ---- endpoint set -------------------------------------------------------------------------
    def load(self, records: Iterable[EndpointRecord]) -> None:
        """Serve exactly ``records`` from now on. An unchanged endpoint keeps its state (cache,
        latency window, hedge budget); one that fails to compile keeps its previous form."""
        endpoints: dict[str, CompiledEndpoint] = {}
        for record in records:
            compiled = self._compiled(record)
            if compiled is not None:
                endpoints[record.name] = compiled
        self._endpoints = endpoints

    def upsert(self, record: EndpointRecord) -> None:
        """Serve ``record`` now (after an apply through this process)."""
        compiled = self._compiled(record)
        if compiled is not None:
            self._endpoints = {**self._endpoints, record.name: compiled}

    def remove(self, name: str) -> None:
        self._endpoints = {k: v for k, v in self._endpoints.items() if k != name}

    def endpoint(self, name: str) -> CompiledEndpoint | None:
        return self._endpoints.get(name)

    def endpoint_names(self) -> list[str]:
        return sorted(self._endpoints)

    def _compiled(self, record: EndpointRecord) -> CompiledEndpoint | None:
        known = self._endpoints.get(record.name)
        if known is not None and known.revision == record.revision and known.spec == record.spec:
            return known
        try:
            return compile_endpoint(record.spec, record.revision, self._clock)
        except ModelYardError as exc:
            log.error("endpoint %s revision %d not loaded: %s", record.name, record.revision, exc)
            return known

    # ---- pass-through -------------------------------------------------------------------------
    def live(self) -> bool:
        return self.inner.live()

    def ready(self) -> bool:
        return self.inner.ready()

    def server_metadata(self) -> ServerMetadata:
        return self.inner.server_metadata()

    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return await self.inner.repository_index(ready_only)

    async def load_model(self, name: str) -> None:
        await self.inner.load_model(name)

    async def unload_model(self, name: str) -> None:
        await self.inner.unload_model(name)

    # ---- metadata -----------------------------------------------------------------------------
    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """An endpoint answers with its primary route's model signature."""
        ep = self._endpoints.get(name)
        if ep is None or version is not None:
            return await self.inner.model_metadata(name, version)
        route = ep.primary
        meta = await self.inner.model_metadata(route.model, version_ref(route.version))
        params: dict[str, Any] = {
            **meta.parameters,
            "endpoint": name,
            "model": route.model,
            "route": route.name,
        }
        return dataclasses.replace(meta, name=name, parameters=params)

    async def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        """An endpoint answers with its primary route's version's configuration, under its own
        name, like its metadata (parameters ``endpoint``, ``model``, ``route``)."""
        ep = self._endpoints.get(name)
        if ep is None or version is not None:
            return await self.inner.model_config(name, version)
        route = ep.primary
        config = await self.inner.model_config(route.model, version_ref(route.version))
        params = {**config.parameters, "endpoint": name, "model": route.model, "route": route.name}
        return dataclasses.replace(config, name=name, parameters=params)

    async def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStatistics]:
        """An endpoint answers with the counts of its primary route's version, under its own
        name (the version's counts, whether requests came through the endpoint or not)."""
        ep = None if name is None else self._endpoints.get(name)
        if ep is None or version is not None:
            return await self.inner.model_statistics(name, version)
        route = ep.primary
        served = await self._resolve(route.model, version_ref(route.version))
        found = await self.inner.model_statistics(route.model, served)
        return [dataclasses.replace(stats, name=ep.name) for stats in found]

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        ep = self._endpoints.get(name)
        if ep is None or version is not None:
            return await self.inner.model_ready(name, version)
        return await self.inner.model_ready(ep.primary.model, version_ref(ep.primary.version))

    # ---- inference ----------------------------------------------------------------------------
    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        ep = self._endpoints.get(name)
        if ep is None or version is not None:
            return await self.inner.infer(name, version, request, ctx)
        started = self._clock.monotonic()
        code = "OK"
        response: InferResponse | None = None
        try:
            response = await self._endpoint_infer(ep, request, ctx)
            return response
        except ModelYardError as exc:
            code = exc.code.value
            raise
        except asyncio.CancelledError:
            code = CANCELLED
            raise
        except BaseException:
            code = ErrorCode.INTERNAL.value
            raise
        finally:
            latency = self._clock.monotonic() - started
            self._observer.on_answer(ep.name, code, answer_source(response), latency)

    async def _endpoint_infer(
        self, ep: CompiledEndpoint, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        route = self._choose(ep, request, ctx)
        ctx.endpoint = ep.name
        ctx.route = route.name
        if ep.hedge is not None:
            ep.hedge.on_request()
        attributes = {"modelyard.endpoint": ep.name, "modelyard.route": route.name}
        with tracing.start_span(tracing.SPAN_TRAFFIC, ctx, attributes=attributes):
            answer = self._responder.answer(ep, ep.by_name[route.name], request, ctx)
            if self.shadows is None or not ep.spec.shadows:
                return await answer
            # The shadows watch a plain future that this coroutine settles: the primary itself
            # runs inline (a Task of its own would cost it extra event-loop turns).
            primary: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()
            try:
                self.shadows.dispatch(ep.spec, request, primary, ctx)
            except Exception:  # a shadow must never cost the client its answer
                log.exception("shadow dispatch failed for endpoint %s", ep.name)
            try:
                response = await answer
            except asyncio.CancelledError:
                primary.cancel()
                raise
            except BaseException as exc:
                primary.set_exception(exc)
                primary.exception()  # retrieved: the caller gets the error, not the event loop
                raise
            primary.set_result(response)
            return response

    def _choose(self, ep: CompiledEndpoint, request: InferRequest, ctx: RequestContext) -> Route:
        weights = None
        if self.rollout_view is not None and ep.spec.rollout is not None:
            weights = self.rollout_view.weights(ep.name)
        key = routing_key(ep.spec, request, ctx)
        bucket = sticky_bucket(ep.name, key) if key is not None else random_bucket(self._rng())
        return pick_route(ep.routes, weights, bucket)


def answer_source(response: InferResponse | None) -> str:
    """What answered an endpoint's client: ``cache`` (the response cache), ``fallback`` (a step
    of the fallback chain), ``route`` (the chosen route's model), or ``none`` (an error)."""
    if response is None:
        return "none"
    params = response.parameters
    if params.get("cache") == "hit":
        return "cache"
    if "fallback" in params:
        return "fallback"
    return "route"
