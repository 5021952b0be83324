"""Hooks through which the core reports what happened, for metrics, logs, payload logs and drift.

The core calls these on the hot path, so implementations must be cheap: count, or put on a bounded
queue and return. They must never raise (the :class:`Observers` fan-out guards against it anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.types import InferRequest, InferResponse, RequestContext

log = logging.getLogger("modelyard.observer")

#: ``InferEvent.code`` of a call cancelled before it finished (e.g. the losing copy of a hedged
#: request): neither a success nor a failure.
CANCELLED = "CANCELLED"
#: ``InferEvent.route`` of a shadow copy, which runs in the shadow helper process.
SHADOW_ROUTE = "shadow"


@dataclass(frozen=True, slots=True)
class InferEvent:
    """One finished inference request, as the dataplane saw it."""

    endpoint: str  # the name the client called (an endpoint or a plain model name)
    model: str
    version: str  # "" when resolution failed
    route: str  # traffic route label ("" for plain models)
    code: str  # "OK", an ErrorCode value, or "CANCELLED" (the caller went away)
    latency_s: float
    request: InferRequest
    response: InferResponse | None
    ctx: RequestContext
    #: What the request adds to the statistics extension's ``inference_count`` when it
    #: succeeds, as Triton counts it: its rows (first dimension) when the version batches (its
    #: configuration's ``max_batch_size`` > 0), else 1 (the model has no batch dimension).
    #: Worked out where the version's batching is known; the dataplane gives 0 for a failure.
    inferences: int = 1


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One model execution (``predict`` call) of ``requests`` requests merged into ``rows``."""

    model: str
    version: str
    rows: int
    requests: int
    queue_wait_s: float  # oldest request's wait before the batch started
    infer_s: float
    #: The waits of all ``requests`` added up (None: unknown, take ``queue_wait_s`` for each).
    queue_wait_total_s: float | None = None
    failed: bool = False  # predict raised: every request of the batch got the error
    #: The version has a batch dimension (configuration ``max_batch_size`` > 0). Without one,
    #: Triton's statistics count every execution as batch size 1, whatever ``rows`` is.
    batch_dim: bool = True


@dataclass(frozen=True, slots=True)
class CacheEvent:
    kind: str  # "load" | "load_failure" | "evict" | "idle_unload" | "unload"
    model: str
    version: str
    seconds: float = 0.0
    bytes: int = 0


class Observer:
    """Base observer: every hook does nothing. Subclass and override what you need."""

    def on_infer(self, event: InferEvent) -> None:
        """Called once per inference request when it finishes (success or error)."""

    def on_batch(self, event: BatchEvent) -> None:
        """Called once per executed batch."""

    def on_cache(self, event: CacheEvent) -> None:
        """Called on model-cache loads, failures and evictions."""

    def on_fallback(self, endpoint: str, reason: str) -> None:
        """Called when an endpoint request enters its fallback chain; ``reason`` is
        ``error``, ``timeout`` or ``nonfinite``."""

    def on_cache_lookup(self, endpoint: str, hit: bool) -> None:
        """Called on every response-cache lookup of an endpoint (not the model cache)."""

    def on_answer(self, endpoint: str, code: str, source: str, latency_s: float) -> None:
        """Called once per request to an endpoint with what its client got: ``code`` (``OK`` or
        the error's), ``source`` (``route``, ``fallback``, ``cache``, or ``none`` for an error)
        and the time the endpoint took. Model calls are :meth:`on_infer`'s, one per call."""

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        """Called once per sampled shadow copy of a request of ``endpoint`` (``shadow`` is
        ``model@version``): ``outcome`` is ``match`` (every compared row agreed), ``mismatch``,
        ``error`` (the shadow failed), ``not_compared`` (the primary had no answer) or
        ``dropped`` (not sent: the box was busy)."""

    def on_hedge(self, endpoint: str, outcome: str) -> None:
        """Called when a hedging endpoint's first copy has not answered within the hedge
        delay: ``outcome`` is ``sent`` (a second copy went out) or ``over_budget`` (the cap on
        extra load refused it)."""


def _overrides(observer: Observer, hook: str) -> bool:
    """Whether ``observer`` does something on ``hook``: anything but :class:`Observer`'s
    no-op, bound (duck-typed observers and hooks set on the instance count as overriding).
    Looked up like a call would, without reading ``__dict__`` (which would slow down every
    later attribute access of the observer)."""
    bound = getattr(observer, hook, None)
    return getattr(bound, "__func__", None) is not getattr(Observer, hook)


class Observers(Observer):
    """Fans each event out to several observers; a failing observer is logged, not raised.

    The per-request hooks (:meth:`on_infer`, :meth:`on_batch`, :meth:`on_answer`) visit only
    the observers that override them, worked out once in :meth:`add`: most observers ignore
    batches, and calling their no-op on every request adds up. Add observers with :meth:`add`."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self._all: list[Observer] = []
        self._infer: tuple[Observer, ...] = ()
        self._batch: tuple[Observer, ...] = ()
        self._answer: tuple[Observer, ...] = ()
        for observer in observers:
            self.add(observer)

    @property
    def observers(self) -> tuple[Observer, ...]:
        """Every observer, in the order added."""
        return tuple(self._all)

    def add(self, observer: Observer) -> None:
        self._all.append(observer)
        self._infer = tuple(o for o in self._all if _overrides(o, "on_infer"))
        self._batch = tuple(o for o in self._all if _overrides(o, "on_batch"))
        self._answer = tuple(o for o in self._all if _overrides(o, "on_answer"))

    def on_infer(self, event: InferEvent) -> None:
        for o in self._infer:
            try:
                o.on_infer(event)
            except Exception:
                log.exception("observer %r failed on an infer event", o)

    def on_batch(self, event: BatchEvent) -> None:
        for o in self._batch:
            try:
                o.on_batch(event)
            except Exception:
                log.exception("observer %r failed on a batch event", o)

    def on_cache(self, event: CacheEvent) -> None:
        for o in self._all:
            try:
                o.on_cache(event)
            except Exception:
                log.exception("observer %r failed on a cache event", o)

    def on_fallback(self, endpoint: str, reason: str) -> None:
        for o in self._all:
            try:
                o.on_fallback(endpoint, reason)
            except Exception:
                log.exception("observer %r failed on a fallback event", o)

    def on_cache_lookup(self, endpoint: str, hit: bool) -> None:
        for o in self._all:
            try:
                o.on_cache_lookup(endpoint, hit)
            except Exception:
                log.exception("observer %r failed on a response-cache event", o)

    def on_answer(self, endpoint: str, code: str, source: str, latency_s: float) -> None:
        for o in self._answer:
            try:
                o.on_answer(endpoint, code, source, latency_s)
            except Exception:
                log.exception("observer %r failed on an endpoint answer", o)

    def on_shadow(self, endpoint: str, shadow: str, outcome: str) -> None:
        for o in self._all:
            try:
                o.on_shadow(endpoint, shadow, outcome)
            except Exception:
                log.exception("observer %r failed on a shadow event", o)

    def on_hedge(self, endpoint: str, outcome: str) -> None:
        for o in self._all:
            try:
                o.on_hedge(endpoint, outcome)
            except Exception:
                log.exception("observer %r failed on a hedge event", o)
