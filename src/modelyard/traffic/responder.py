"""How one endpoint request is answered once its route is chosen: timeout, response cache,
cascade, hedging and the fallback chain, around calls to the inner (serving) dataplane.

The choices are made by the pure policies (:mod:`~modelyard.traffic.fallback`,
:mod:`~modelyard.traffic.cascade`, :mod:`~modelyard.traffic.hedging`,
:mod:`~modelyard.traffic.response_cache`); this module only carries them out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from modelyard.core.clock import Clock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import Observer
from modelyard.errors import DeadlineExceededError, InferenceError, ModelYardError
from modelyard.monitoring import tracing
from modelyard.traffic.calls import run_hedged, within
from modelyard.traffic.cascade import needs_escalation
from modelyard.traffic.compiled import CompiledEndpoint, CompiledRoute, version_ref
from modelyard.traffic.fallback import Reason, failure_reason, has_nonfinite, steps_for
from modelyard.traffic.hedging import hedge_delay
from modelyard.traffic.materialized import MaterializedTables
from modelyard.traffic.response_cache import CachedAnswer, cache_key, input_key
from modelyard.traffic.spec import Cascade, Route
from modelyard.types import InferRequest, InferResponse, RequestContext

log = logging.getLogger("modelyard.traffic")

VersionResolver = Callable[[str, str | None], Awaitable[str]]
"""``(model, version ref) -> concrete version`` (as text); used to key the response cache."""

FALLBACK_ROUTE = "fallback"
"""The ``route`` label of calls made by the fallback chain (in stats and observers)."""
STATIC = "static"
HEDGE_SENT = "sent"
"""``on_hedge`` outcome: the first copy outlived the delay and a second copy went out."""
HEDGE_OVER_BUDGET = "over_budget"
"""``on_hedge`` outcome: the first copy outlived the delay but the cap refused a second copy."""


class Responder:
    """Answers requests for a chosen route of a compiled endpoint."""

    def __init__(
        self,
        inner: DataPlane,
        resolve: VersionResolver,
        observer: Observer,
        clock: Clock,
        tables: MaterializedTables | None = None,
    ) -> None:
        self.inner = inner
        #: Reads ``materialized`` routes' tables (None: such routes answer live).
        self.tables = tables
        self._resolve = resolve
        self._observer = observer
        self._clock = clock

    async def answer(
        self, ep: CompiledEndpoint, cr: CompiledRoute, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        """The route's answer within the endpoint's timeout, or the fallback chain's."""
        digest = input_key(request.inputs, request.outputs) if ep.cache is not None else b""
        call_ctx, timeout = ctx, None
        if ep.timeout_s is not None:
            now = self._clock.monotonic()
            deadline = now + ep.timeout_s
            if ctx.deadline is not None:
                deadline = min(deadline, ctx.deadline)
            call_ctx = dataclasses.replace(ctx, deadline=deadline)
            timeout = deadline - now
        failure: BaseException | None = None
        reason: Reason | None
        try:
            response = await within(self._primary(ep, cr, request, call_ctx, digest), timeout)
        except (ModelYardError, TimeoutError) as exc:
            failure, reason = exc, failure_reason(exc)
        else:
            if not (ep.check_nonfinite and has_nonfinite(response.outputs)):
                return response
            reason = "nonfinite"
        if reason is None or not steps_for(ep.spec.fallback, reason):
            _reraise(ep, failure)
        self._observer.on_fallback(ep.name, reason)
        with tracing.start_span(
            tracing.SPAN_FALLBACK, ctx, attributes={"modelyard.fallback.reason": reason}
        ):
            answer = await self._fallback(ep, cr.route, reason, request, ctx, digest)
        if answer is not None:
            return answer
        _reraise(ep, failure)

    # ---- the route's own answer ---------------------------------------------------------------
    async def _primary(
        self,
        ep: CompiledEndpoint,
        cr: CompiledRoute,
        request: InferRequest,
        ctx: RequestContext,
        digest: bytes,
    ) -> InferResponse:
        cache = ep.cache
        if cache is None:
            return annotate(ep, cr.route, await self._route_call(ep, cr, request, ctx, cr.ref))
        # Pin concrete versions first: the key names every version that may answer, so an
        # entry can never outlive the version it came from.
        first = await self._resolve(cr.route.model, cr.ref)
        then = None
        tag = first
        if cr.cascade:
            target = _cascade(ep).then
            then = await self._resolve(target.model, version_ref(target.version))
            tag = f"{first}>{target.model}:{then}"
        key = cache_key(cr.route.model, tag, digest)
        if ep.serve_from_cache:
            hit = cache.get(key)
            self._observer.on_cache_lookup(ep.name, hit is not None)
            if hit is not None:
                return annotate(ep, cr.route, from_cache(hit, request), cache="hit")
        response = await self._route_call(ep, cr, request, ctx, first, then)
        if not has_nonfinite(response.outputs):
            notes = {k: str(v) for k, v in response.parameters.items() if k == "cascade"}
            cache.put(
                key,
                response.outputs,
                model=response.model_name,
                version=response.model_version,
                notes=notes,
            )
        return annotate(ep, cr.route, response)

    async def _route_call(
        self,
        ep: CompiledEndpoint,
        cr: CompiledRoute,
        request: InferRequest,
        ctx: RequestContext,
        ref: str | None,
        then_ref: str | None = None,
    ) -> InferResponse:
        if cr.route.materialized is not None and self.tables is not None:
            model = cr.route.model
            return await self.tables.answer(
                cr.route,
                ref,
                request,
                ctx,
                self._resolve,
                lambda: self._dispatch(ep, model, ref, request, ctx),
            )
        if not cr.cascade:
            return await self._dispatch(ep, cr.route.model, ref, request, ctx)
        cascade = _cascade(ep)
        if then_ref is None:
            then_ref = version_ref(cascade.then.version)
        wanted = request.outputs
        first_request = request
        if wanted is not None and cascade.output not in wanted:
            first_request = dataclasses.replace(request, outputs=[*wanted, cascade.output])
        first = await self._dispatch(ep, cr.route.model, ref, first_request, ctx)
        scores = first.outputs.get(cascade.output)
        if scores is not None and not needs_escalation(scores, cascade.threshold):
            if first_request is not request and wanted is not None:
                first.outputs = {k: v for k, v in first.outputs.items() if k in wanted}
            first.parameters["cascade"] = "first"
            return first
        second = await self._dispatch(ep, cascade.then.model, then_ref, request, ctx)
        second.parameters["cascade"] = "then"
        return second

    async def _dispatch(
        self,
        ep: CompiledEndpoint,
        model: str,
        ref: str | None,
        request: InferRequest,
        ctx: RequestContext,
    ) -> InferResponse:
        """One model call, hedged when the endpoint hedges."""
        if ep.hedge is None:
            return await self.inner.infer(model, ref, request, ctx)
        window = ep.window(model, ref)
        clock = self._clock

        async def call() -> InferResponse:
            started = clock.monotonic()
            response = await self.inner.infer(model, ref, request, ctx)
            window.add(clock.monotonic() - started)
            return response

        budget, observer = ep.hedge, self._observer

        def allow() -> bool:
            sent = budget.try_hedge()
            observer.on_hedge(ep.name, HEDGE_SENT if sent else HEDGE_OVER_BUDGET)
            return sent

        delay = hedge_delay(ep.spec.hedging, window.p95())
        return await run_hedged(call, delay, allow)

    # ---- fallback chain -----------------------------------------------------------------------
    async def _fallback(
        self,
        ep: CompiledEndpoint,
        route: Route,
        reason: Reason,
        request: InferRequest,
        ctx: RequestContext,
        digest: bytes,
    ) -> InferResponse | None:
        """The first step of the chain that answers (finite outputs), or None."""
        fallback_ctx = dataclasses.replace(ctx, route=FALLBACK_ROUTE)
        steps = steps_for(ep.spec.fallback, reason)
        for i, step in enumerate(steps):
            notes = {"fallback": reason, "fallback_step": step.kind}
            if step.kind == "model" and step.model is not None:
                try:
                    response = await self.inner.infer(
                        step.model, version_ref(step.version), request, fallback_ctx
                    )
                except ModelYardError as exc:
                    log.info("endpoint %s: fallback %s failed: %s", ep.name, step.model, exc)
                    continue
                if not has_nonfinite(response.outputs):
                    return annotate(ep, route, response, **notes)
            elif step.kind == "last_good" and ep.cache is not None:
                hit = ep.cache.last_good(digest)
                if hit is not None:
                    return annotate(ep, route, from_cache(hit, request), **notes)
            elif step.kind == "static":
                outputs = ep.statics[i]
                if request.outputs is not None:
                    outputs = {k: v for k, v in outputs.items() if k in request.outputs}
                params: dict[str, Any] = {"route": route.name, "answered_by": STATIC, **notes}
                return InferResponse(ep.name, "", dict(outputs), request.id, params)
        return None


def annotate(
    ep: CompiledEndpoint, route: Route, response: InferResponse, **notes: str
) -> InferResponse:
    """The response as the endpoint's: named after it, with route and origin in parameters."""
    params = {
        # A materialized route's answer says itself who answered ("table" or "live").
        "answered_by": f"{response.model_name}:{response.model_version}",
        **response.parameters,
        "route": route.name,
        **notes,
    }
    return InferResponse(ep.name, response.model_version, response.outputs, response.id, params)


def from_cache(hit: CachedAnswer, request: InferRequest) -> InferResponse:
    return InferResponse(hit.model, hit.version, dict(hit.outputs), request.id, dict(hit.notes))


def _cascade(ep: CompiledEndpoint) -> Cascade:
    assert ep.spec.cascade is not None  # compiled routes cascade only when the spec has one
    return ep.spec.cascade


def _reraise(ep: CompiledEndpoint, failure: BaseException | None) -> NoReturn:
    """Give the client the primary's failure (an endpoint timeout as DEADLINE_EXCEEDED)."""
    if failure is None:
        raise InferenceError(
            f"endpoint {ep.name!r}: the outputs hold NaN/Inf and no fallback answered"
        )
    if isinstance(failure, TimeoutError):
        raise DeadlineExceededError(
            f"endpoint {ep.name!r} did not answer before its deadline "
            f"(timeout_ms={ep.spec.timeout_ms:g})"
        ) from failure
    raise failure
