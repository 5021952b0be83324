"""OpenTelemetry tracing, optional (``pip install 'modelyard[otel]'``) and free when off.

One request becomes one trace: ``frontend`` (REST or gRPC, continuing a W3C ``traceparent``
from the HTTP headers or gRPC metadata) -> ``traffic`` spans of an endpoint's policy -> one
``dataplane`` span per model call (the primary route, each shadow, each fallback) ->
``batcher`` (time in the version's batch queue) -> ``runtime`` (the ``predict`` call).

Code on the request path calls :func:`start_span`, which returns one shared do-nothing context
manager while tracing is off, so the hot path pays a global read and a ``with`` statement. The
span parent is the current span (asyncio tasks inherit it, so a shadow spawned with
``asyncio.create_task`` inside a request joins the request's trace); only a span started with
no current span (the frontend's) takes its parent from ``ctx.headers['traceparent']``. Work
handed to a thread pool keeps the trace with :func:`carry_context`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from modelyard.errors import install_hint

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from modelyard.types import RequestContext

log = logging.getLogger("modelyard.tracing")

P = ParamSpec("P")
R = TypeVar("R")
AttributeValue = str | bool | int | float | Sequence[str]

#: Span names, one per layer of the data path.
SPAN_HTTP = "modelyard.frontend.rest"
SPAN_GRPC = "modelyard.frontend.grpc"
SPAN_DATAPLANE = "modelyard.dataplane"
SPAN_TRAFFIC = "modelyard.traffic"
SPAN_SHADOW = "modelyard.traffic.shadow"
SPAN_FALLBACK = "modelyard.traffic.fallback"
SPAN_BATCHER = "modelyard.batcher"
SPAN_RUNTIME = "modelyard.runtime"

TRACEPARENT = "traceparent"
_NOOP: AbstractContextManager[None] = contextlib.nullcontext()


class _State:
    tracer: Tracer | None = None
    provider: object = None
    propagator: Any = None


_state = _State()


def enabled() -> bool:
    """True while a tracer is configured (:func:`configure_tracing`)."""
    return _state.tracer is not None


def start_span(
    name: str,
    ctx: RequestContext | None = None,
    *,
    server: bool = False,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Any]:
    """``with start_span(SPAN_X, ctx):`` opens a span as the current one (a no-op when off).

    ``server=True`` marks the span that receives a request (SERVER kind). Exceptions leaving
    the block are recorded on the span and set its status to error."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    from opentelemetry import trace

    parent = None
    if ctx is not None and TRACEPARENT in ctx.headers:
        if not trace.get_current_span().get_span_context().is_valid:
            parent = _state.propagator.extract(carrier=ctx.headers)
    attrs: dict[str, AttributeValue] = dict(attributes or {})
    if ctx is not None:
        attrs["modelyard.request_id"] = ctx.request_id
        if ctx.endpoint:
            attrs["modelyard.endpoint"] = ctx.endpoint
        if ctx.route:
            attrs["modelyard.route"] = ctx.route
    kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
    return tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attrs)


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the caller's contextvars (so to its current span), for thread pools:
    ``loop.run_in_executor(pool, carry_context(fn), ...)``. ``fn`` itself when tracing is off."""
    if _state.tracer is None:
        return fn
    return functools.partial(contextvars.copy_context().run, fn)


def traced(
    fn: Callable[P, R], name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> Callable[P, R]:
    """``fn`` wrapped in a span ``name`` per call; ``fn`` itself when tracing is off now."""
    if _state.tracer is None:
        return fn

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with start_span(name, attributes=attributes):
            return fn(*args, **kwargs)

    return wrapper


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current span's ``traceparent`` into ``headers`` (for calls to other services,
    e.g. a remote shadow). Does nothing when tracing is off or no span is current."""
    if _state.tracer is not None:
        _state.propagator.inject(carrier=headers)


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits (for log lines), or None."""
    if _state.tracer is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def configure_tracing(
    *,
    service_name: str = "modelyard",
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> Callable[[], None]:
    """Start tracing in this process; returns the function that flushes and stops it.

    Spans go to ``exporter`` when given (tests pass an in-memory one; exported synchronously),
    else in batches to the OTLP/HTTP collector at ``otlp_endpoint`` (``/v1/traces`` is added
    when missing; None: the OTLP exporter's default, ``OTEL_EXPORTER_OTLP_*`` variables)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise install_hint("opentelemetry-sdk", "otel") from exc

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    _state.propagator = TraceContextTextMapPropagator()
    _state.provider = provider
    _state.tracer = provider.get_tracer("modelyard")

    def shutdown() -> None:
        if _state.provider is provider:
            _state.tracer = _state.provider = None
        provider.shutdown()

    return shutdown


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise install_hint("opentelemetry-exporter-otlp-proto-http", "otel") from exc
    if endpoint is None:
        return OTLPSpanExporter()
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url)
