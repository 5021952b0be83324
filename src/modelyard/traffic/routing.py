"""Which route serves a request: pure functions over the spec, the rollout weights and a key.

A request maps to a bucket in ``0..BUCKETS-1``; each route owns a contiguous range of buckets
sized by its weight, in spec order with the rollout's ``candidate`` route last. With a sticky key
the bucket is a hash of the endpoint name and the key (the same on every replica and after
restarts, no shared state); without one it is drawn at random. Because the candidate owns the
top of the range, a key that reached the candidate at 20 % stays on it at 50 % and 80 %.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.traffic.spec import EndpointSpec, Route
from modelyard.types import InferRequest, RequestContext

BUCKETS = 10_000
CANDIDATE = "candidate"
"""Name of the synthetic route that serves ``spec.rollout.candidate`` during a rollout."""


def candidate_route(spec: EndpointSpec) -> Route | None:
    """The synthetic ``candidate`` route of a spec with a rollout (weight 0 until the rollout
    view gives it one), else None."""
    if spec.rollout is None:
        return None
    ref = spec.rollout.candidate
    # model_construct: the parts were validated with the spec; this runs per spec load only.
    return Route.model_construct(name=CANDIDATE, model=ref.model, version=ref.version, weight=0.0)


def routes_of(spec: EndpointSpec) -> tuple[Route, ...]:
    """Every route a request to ``spec`` may take: the spec's, then the candidate (if any)."""
    candidate = candidate_route(spec)
    return spec.routes if candidate is None else (*spec.routes, candidate)


def sticky_bucket(endpoint: str, key: str) -> int:
    """The bucket of a sticky key: stable across processes, hosts and restarts."""
    digest = hashlib.blake2b(f"{endpoint}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def random_bucket(rnd: float) -> int:
    """The bucket of a request without a key; ``rnd`` is uniform in [0, 1)."""
    return min(int(rnd * BUCKETS), BUCKETS - 1)


def pick_route(routes: Sequence[Route], weights: Mapping[str, float] | None, bucket: int) -> Route:
    """The route owning ``bucket``. ``weights`` (by route name, any positive total) replaces
    the routes' own weights; routes it does not name get 0. Weights that are all zero, or
    None, fall back to the routes' own."""
    values = [float(weights.get(r.name, 0.0)) for r in routes] if weights else []
    total = sum(v for v in values if v > 0)
    if total <= 0:
        values = [r.weight for r in routes]
        total = sum(values)
    point = (bucket + 0.5) / BUCKETS * total
    acc = 0.0
    chosen = routes[0]
    for route, value in zip(routes, values, strict=True):
        if value <= 0:
            continue
        chosen = route
        acc += value
        if point < acc:
            return route
    return chosen  # float rounding at the very top of the range


def choose_route(
    spec: EndpointSpec, rollout_weights: Mapping[str, float] | None, key: str | None, rnd: float
) -> Route:
    """The route for one request to ``spec``: sticky by ``key`` when given, else by ``rnd``."""
    bucket = sticky_bucket(spec.name, key) if key is not None else random_bucket(rnd)
    return pick_route(routes_of(spec), rollout_weights, bucket)


def routing_key(spec: EndpointSpec, request: InferRequest, ctx: RequestContext) -> str | None:
    """The request's sticky key: the spec's ``sticky_key`` as a header (case-insensitive) or a
    request parameter, else the generic routing key (``x-modelyard-key`` / gRPC metadata)."""
    name = spec.sticky_key
    if name is not None:
        value = ctx.headers.get(name.lower())
        if value is None:
            value = ctx.headers.get(name)
        if value is None:
            value = _scalar_text(request.parameters.get(name))
        if value:
            return value
    return ctx.routing_key or None


def primary_route(spec: EndpointSpec) -> Route:
    """The route with the largest weight (the first of equals): it answers metadata calls."""
    return max(spec.routes, key=lambda r: r.weight)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None
