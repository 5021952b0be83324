"""Route choice: pure, table-driven (weights, sticky keys, the rollout's candidate), and the
TrafficDataPlane's use of it (annotations, rollout view, pass-through of plain models)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelyard.traffic.routing import (
    BUCKETS,
    CANDIDATE,
    choose_route,
    pick_route,
    primary_route,
    random_bucket,
    routes_of,
    routing_key,
    sticky_bucket,
)
from modelyard.types import InferRequest, RequestContext
from tests.unit.traffic.fakes import FakeInner, infer, spec, traffic, x

AB = spec(
    routes=[
        {"name": "a", "model": "m", "version": 1, "weight": 30},
        {"name": "b", "model": "m", "version": 2, "weight": 70},
    ],
    sticky_key="x-user-id",
)
WITH_ROLLOUT = spec(
    routes=[{"name": "stable", "model": "m", "version": "production", "weight": 100}],
    rollout={"candidate": {"model": "m", "version": "candidate"}, "steps": [{"weight": 20}]},
)


@pytest.mark.parametrize(
    ("weights", "bucket", "expected"),
    [
        (None, 0, "a"),
        (None, 2999, "a"),
        (None, 3000, "b"),
        (None, BUCKETS - 1, "b"),
        ({"a": 100, "b": 0}, BUCKETS - 1, "a"),
        ({"a": 0, "b": 100}, 0, "b"),
        ({"a": 50, "b": 50}, 4999, "a"),
        ({"a": 50, "b": 50}, 5000, "b"),
        ({"a": 1, "b": 1}, 5000, "b"),  # any positive total is normalised
        ({"unknown": 100}, 0, "a"),  # names it does not know: the spec's weights
        ({"a": 0, "b": 0}, BUCKETS - 1, "b"),  # all zero: the spec's weights
    ],
)
def test_pick_route_owns_contiguous_bucket_ranges(
    weights: dict[str, float] | None, bucket: int, expected: str
) -> None:
    assert pick_route(AB.routes, weights, bucket).name == expected


@pytest.mark.parametrize(
    ("weights", "bucket", "expected"),
    [
        (None, BUCKETS - 1, "stable"),  # no rollout weights: the candidate gets nothing
        ({"stable": 80, CANDIDATE: 20}, 7999, "stable"),
        ({"stable": 80, CANDIDATE: 20}, 8000, CANDIDATE),
        ({"stable": 0, CANDIDATE: 100}, 0, CANDIDATE),
    ],
)
def test_candidate_route_takes_the_top_of_the_range(
    weights: dict[str, float] | None, bucket: int, expected: str
) -> None:
    chosen = pick_route(routes_of(WITH_ROLLOUT), weights, bucket)
    assert chosen.name == expected
    if expected == CANDIDATE:
        assert (chosen.model, chosen.version) == ("m", "candidate")


def test_a_key_on_the_candidate_stays_there_as_the_rollout_grows() -> None:
    routes = routes_of(WITH_ROLLOUT)
    keys = [f"user-{i}" for i in range(2000)]

    def on_candidate(weight: float) -> set[str]:
        weights = {"stable": 100 - weight, CANDIDATE: weight}
        return {
            k for k in keys if pick_route(routes, weights, sticky_bucket("ep", k)).name == CANDIDATE
        }

    at20, at50, at80 = on_candidate(20), on_candidate(50), on_candidate(80)
    assert at20 <= at50 <= at80
    assert 0.17 < len(at20) / len(keys) < 0.23


def test_weights_hold_within_two_points_over_10k_requests_without_a_key() -> None:
    rnd = random.Random(7)
    counts = Counter(choose_route(AB, None, None, rnd.random()).name for _ in range(10_000))
    assert abs(counts["a"] / 100 - 30) <= 2
    assert abs(counts["b"] / 100 - 70) <= 2


def test_weights_hold_within_two_points_over_10k_distinct_keys() -> None:
    counts = Counter(choose_route(AB, None, f"user-{i}", 0.0).name for i in range(10_000))
    assert abs(counts["a"] / 100 - 30) <= 2


def test_sticky_key_always_lands_on_the_same_route() -> None:
    for i in range(200):
        key = f"user-{i}"
        first = choose_route(AB, None, key, 0.0).name
        assert all(choose_route(AB, None, key, r / 10).name == first for r in range(10))


def test_sticky_bucket_is_stable_across_processes_and_releases() -> None:
    # blake2b of "endpoint\0key": a fixed number, not Python's per-process salted hash().
    assert sticky_bucket("ep", "user-42") == sticky_bucket("ep", "user-42")
    assert sticky_bucket("ep", "user-42") == 1966  # pinned: changing it moves every user
    assert sticky_bucket("other", "user-42") != sticky_bucket("ep", "user-42")


@pytest.mark.parametrize(("rnd", "bucket"), [(0.0, 0), (0.5, 5000), (0.99999999, BUCKETS - 1)])
def test_random_bucket(rnd: float, bucket: int) -> None:
    assert random_bucket(rnd) == bucket


@pytest.mark.parametrize(
    ("headers", "parameters", "generic", "expected"),
    [
        ({"x-user-id": "u1"}, {}, None, "u1"),
        ({}, {"x-user-id": "u2"}, None, "u2"),
        ({}, {"x-user-id": 42}, None, "42"),
        ({"x-user-id": "u1"}, {"x-user-id": "u2"}, "g", "u1"),  # header first
        ({}, {}, "g", "g"),  # the generic x-modelyard-key
        ({}, {"x-user-id": True}, None, None),  # not a usable key
        ({"x-user-id": ""}, {}, None, None),
        ({}, {}, None, None),
    ],
)
def test_routing_key_sources(
    headers: dict[str, str],
    parameters: dict[str, object],
    generic: str | None,
    expected: str | None,
) -> None:
    request = InferRequest(inputs={}, parameters=dict(parameters))
    ctx = RequestContext(headers=headers, routing_key=generic)
    assert routing_key(AB, request, ctx) == expected


def test_sticky_header_name_is_case_insensitive() -> None:
    endpoint = spec(sticky_key="X-User-Id")
    ctx = RequestContext(headers={"x-user-id": "u1"})
    assert routing_key(endpoint, InferRequest(inputs={}), ctx) == "u1"


def test_primary_route_is_the_heaviest_first_of_equals() -> None:
    assert primary_route(AB).name == "b"
    even = spec(
        routes=[
            {"name": "p", "model": "m", "weight": 50},
            {"name": "q", "model": "m", "weight": 50},
        ]
    )
    assert primary_route(even).name == "p"


# ---- through the dataplane ----------------------------------------------------------------------
def ab_inner() -> FakeInner:
    inner = FakeInner()
    inner.add("m", "2")
    return inner


def test_endpoint_response_names_route_version_and_model() -> None:
    inner = ab_inner()
    dp = traffic(inner, AB)
    ctx = RequestContext(headers={"x-user-id": "user-1"})
    response = infer(dp, "ep", ctx=ctx)
    route = choose_route(AB, None, "user-1", 0.0)
    assert response.model_name == "ep"
    assert response.model_version == str(route.version)
    assert response.parameters == {"route": route.name, "answered_by": f"m:{route.version}"}
    assert (ctx.endpoint, ctx.route) == ("ep", route.name)
    assert (inner.calls[0].endpoint, inner.calls[0].route) == ("ep", route.name)


def test_same_key_same_route_through_the_dataplane() -> None:
    dp = traffic(ab_inner(), AB)
    for i in range(20):
        routes = {
            infer(dp, ctx=RequestContext(headers={"x-user-id": f"k{i}"})).parameters["route"]
            for _ in range(5)
        }
        assert len(routes) == 1


def test_random_routing_uses_the_injected_rng() -> None:
    draws = iter([0.1, 0.9])
    dp = traffic(ab_inner(), AB, rng=lambda: next(draws))
    assert infer(dp).parameters["route"] == "a"
    assert infer(dp).parameters["route"] == "b"


class FixedView:
    def __init__(self, weights: dict[str, float] | None) -> None:
        self._weights = weights
        self.asked: list[str] = []

    def weights(self, endpoint: str) -> dict[str, float] | None:
        self.asked.append(endpoint)
        return self._weights


def test_rollout_view_sends_traffic_to_the_candidate() -> None:
    inner = FakeInner()
    inner.add("m", "1")
    dp = traffic(inner, WITH_ROLLOUT, rng=lambda: 0.0)
    view = FixedView({"stable": 0, CANDIDATE: 100})
    dp.rollout_view = view
    response = infer(dp)
    assert response.parameters["route"] == CANDIDATE
    assert (inner.calls[-1].model, inner.calls[-1].version) == ("m", "candidate")
    assert view.asked == ["ep"]


def test_rollout_view_is_not_asked_for_endpoints_without_a_rollout() -> None:
    dp = traffic(ab_inner(), AB)
    view = FixedView({"a": 100})
    dp.rollout_view = view
    infer(dp)
    assert view.asked == []


def test_plain_model_names_pass_straight_through() -> None:
    inner = ab_inner()
    dp = traffic(inner, AB)
    response = infer(dp, "m", x(3.0))
    assert response.model_name == "m" and response.parameters == {}
    assert inner.calls[-1].endpoint is None


def test_endpoint_named_like_a_model_wins_but_an_explicit_version_reaches_the_model() -> None:
    inner = FakeInner()
    inner.add("fraud", "5", factor=1.0)
    inner.add("fraud-lite", "1", factor=10.0)
    endpoint = spec(name="fraud", routes=[{"name": "lite", "model": "fraud-lite", "weight": 100}])
    dp = traffic(inner, endpoint)
    via_endpoint = infer(dp, "fraud", x(1.0))
    assert via_endpoint.parameters["answered_by"] == "fraud-lite:1"
    assert float(via_endpoint.outputs["y"][0, 0]) == 10.0
    direct = infer(dp, "fraud", x(1.0), version="5")
    assert direct.model_name == "fraud" and direct.model_version == "5"
    assert float(direct.outputs["y"][0, 0]) == 1.0


def test_load_replaces_the_endpoint_set_and_keeps_unchanged_state() -> None:
    from tests.unit.traffic.fakes import record

    dp = traffic(ab_inner(), AB)
    kept = dp.endpoint("ep")
    dp.load([record(AB)])
    assert dp.endpoint("ep") is kept
    dp.load([record(AB, revision=2)])
    assert dp.endpoint("ep") is not kept
    dp.load([])
    assert dp.endpoint("ep") is None and dp.endpoint_names() == []
