"""Per-interval serving stats: histogram, collector (fake clock), exact merges, registry rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.observer import InferEvent
from modelyard.errors import InvalidInputError
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from modelyard.traffic.stats import (
    BUCKETS_PER_DOUBLING,
    ENDPOINT_ROUTE,
    MIN_LATENCY_S,
    SHADOW_ROUTE,
    Histogram,
    RouteStats,
    StatsCollector,
    StatsRow,
    bucket_of,
    bucket_upper,
    merge_rows,
    replica_name,
    version_number,
)
from modelyard.traffic.stats_store import StatsWriter, prune_rows, read_rows, write_rows
from modelyard.types import InferRequest, RequestContext

WALL0 = 1_700_000_000.0  # a multiple of 10 s: interval boundaries are easy to see


def event(
    latency_s: float = 0.01,
    *,
    code: str = "OK",
    endpoint: str = "fraud",
    route: str = "a",
    model: str = "fraud",
    version: str = "3",
) -> InferEvent:
    return InferEvent(
        endpoint=endpoint,
        model=model,
        version=version,
        route=route,
        code=code,
        latency_s=latency_s,
        request=InferRequest(inputs={}),
        response=None,
        ctx=RequestContext(),
    )


# ---- histogram -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("latency", "bucket"),
    [
        (0.0, 0),
        (-1.0, 0),
        (float("nan"), 0),
        (MIN_LATENCY_S, 0),
        (MIN_LATENCY_S * 1.0001, 1),
        (MIN_LATENCY_S * 2, BUCKETS_PER_DOUBLING),
        (MIN_LATENCY_S * 2.0001, BUCKETS_PER_DOUBLING + 1),
        (1e9, 8 * 32),
    ],
)
def test_bucket_edges(latency: float, bucket: int) -> None:
    assert bucket_of(latency) == bucket


def test_every_latency_is_within_its_bucket() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        x = 10 ** rng.uniform(-5.5, 2)
        i = bucket_of(x)
        assert bucket_upper(i - 1) < x <= bucket_upper(i) * (1 + 1e-12)
        assert bucket_upper(i) / x < 2 ** (1 / BUCKETS_PER_DOUBLING) + 1e-9  # <= 9 % over


def test_quantiles() -> None:
    h = Histogram()
    assert h.quantile(0.99) is None
    for ms in range(1, 101):  # 1 .. 100 ms
        h.add(ms / 1000)
    p99 = h.quantile(0.99)
    assert p99 is not None and 0.099 <= p99 <= 0.099 * 1.1
    p50 = h.quantile(0.5)
    assert p50 is not None and 0.050 <= p50 <= 0.050 * 1.1
    assert h.quantile(1.0) == bucket_upper(bucket_of(0.1))
    assert h.total == 100


def test_merging_replicas_is_exact() -> None:
    """Two replicas' histograms summed equal one histogram of all the latencies."""
    rng = np.random.default_rng(3)
    lat = rng.lognormal(mean=-4, sigma=1, size=5000)
    one, a, b = Histogram(), Histogram(), Histogram()
    for i, x in enumerate(lat):
        one.add(float(x))
        (a if i % 3 else b).add(float(x))
    a.merge(b)
    assert a == one
    for q in (0.5, 0.9, 0.99, 0.999):
        assert a.quantile(q) == one.quantile(q)


def test_histogram_json() -> None:
    h = Histogram()
    h.add(0.001, 3)
    assert Histogram.from_json(json.loads(json.dumps(h.to_json()))) == h
    with pytest.raises(InvalidInputError, match="latency"):
        Histogram.from_json([1, 2])
    with pytest.raises(InvalidInputError, match="latency"):
        Histogram.from_json({"x": 1})


# ---- route stats ---------------------------------------------------------------------------------
def test_route_stats_json_round_trip_and_merge() -> None:
    s = RouteStats()
    s.record("OK", 0.01)
    s.record("INTERNAL", 0.5)
    s.record("INVALID_ARGUMENT", 0.001)
    s.fallbacks["error"] = 2
    s.shadow_stats().compared = 9
    back = RouteStats.from_json(json.loads(json.dumps(s.to_json(10.0))))
    assert back == s
    assert s.requests == 3
    assert s.failures() == 2  # every error counts; bad input fails on every version alike
    assert s.latency.total == 1  # latency of successful requests only
    back.merge(s)
    assert back.requests == 6 and back.errors == {"INTERNAL": 2, "INVALID_ARGUMENT": 2}
    assert back.fallbacks == {"error": 4}
    assert back.shadow is not None and back.shadow.compared == 18


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("x", "JSON object"),
        ({"requests": "many"}, "bad counts"),
        ({"errors": {"INTERNAL": "x"}}, "bad counts"),
        ({"shadow": []}, "'shadow'"),
        ({"shadow": {"compared": "x"}}, "'shadow'"),
    ],
)
def test_malformed_rows_name_the_field(data: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        RouteStats.from_json(data)


@pytest.mark.parametrize(("text", "number"), [("3", 3), ("", 0), (None, 0), (7, 7), ("x", 0)])
def test_version_number(text: str | int | None, number: int) -> None:
    assert version_number(text) == number


def test_replica_name() -> None:
    assert replica_name(Settings(replica_id="pod-7")) == "pod-7"
    assert replica_name(Settings()).endswith(f"-{__import__('os').getpid()}")


# ---- collector -----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=WALL0)


def test_collector_keys_and_intervals(clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="r1", clock=clock)
    c.on_infer(event(0.01))
    c.on_infer(event(0.02, code="INTERNAL"))
    c.on_infer(event(0.01, route="candidate", version="4"))
    c.on_infer(event(0.01, version=""))  # resolution failed: version 0
    assert c.take() == []  # the current interval is not finished
    clock.advance(10)
    c.on_infer(event(0.01))
    rows = {(r.interval_start, r.route, r.version): r for r in c.take()}
    assert set(rows) == {(WALL0, "a", 3), (WALL0, "candidate", 4), (WALL0, "a", 0)}
    assert rows[(WALL0, "a", 3)].stats.requests == 2
    assert rows[(WALL0, "a", 3)].stats.errors == {"INTERNAL": 1}
    assert all(r.replica == "r1" for r in rows.values())
    left = c.take(everything=True)
    assert [(r.interval_start, r.stats.requests) for r in left] == [(WALL0 + 10, 1)]
    assert c.take(everything=True) == []


def test_requests_move_to_the_next_interval_exactly_at_its_boundary() -> None:
    clock = FakeClock(start=0.0, wall_start=WALL0)
    c = StatsCollector(interval_s=10, replica="r", clock=clock)
    clock.advance(9.75)
    c.on_infer(event())  # the last moment of [WALL0, WALL0 + 10)
    clock.advance(0.25)
    c.on_infer(event())  # the first of the next interval
    c.on_infer(event())
    clock.advance(-0.25)  # the wall clock stepped back: counted where it now reads
    c.on_infer(event())
    got = {r.interval_start: r.stats.requests for r in c.take(everything=True)}
    assert got == {WALL0: 2, WALL0 + 10: 2}


def test_counted_intervals_are_those_interval_start_names() -> None:
    clock = FakeClock(start=0.0, wall_start=WALL0 + 0.05)
    c = StatsCollector(interval_s=0.1, replica="r", clock=clock)
    expected: dict[float, int] = {}
    for _ in range(200):  # steps that are no multiple of the interval, nor exact in binary
        clock.advance(0.037)
        start = c.interval_start(clock.wall())
        expected[start] = expected.get(start, 0) + 1
        c.on_infer(event())
    got = {r.interval_start: r.stats.requests for r in c.take(everything=True)}
    assert got == expected


def test_requests_after_a_take_in_the_same_interval_are_kept(clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="r", clock=clock)
    c.on_infer(event())
    assert [r.stats.requests for r in c.take(everything=True)] == [1]
    c.on_infer(event())  # same interval: a fresh row, not the one already taken
    c.on_infer(event(code="INTERNAL"))
    (row,) = c.take(everything=True)
    assert (row.interval_start, row.stats.requests, row.stats.errors) == (
        WALL0,
        2,
        {"INTERNAL": 1},
    )
    assert row.stats.latency.total == 1


def test_cancelled_calls_are_extra_load_not_requests(clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="r1", clock=clock)
    c.on_infer(event(code="CANCELLED"))  # e.g. the losing copy of a hedged request
    c.on_infer(event())
    (row,) = c.take(everything=True)
    assert (row.stats.requests, row.stats.cancelled, row.stats.errors) == (1, 1, {})
    assert RouteStats.from_json(row.stats.to_json(10)).cancelled == 1


def test_fallbacks_and_shadows(clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="r1", clock=clock)
    c.on_fallback("fraud", "timeout")
    c.on_fallback("fraud", "timeout", route="candidate")
    c.record_shadow("fraud", "fraud", 4, compared=2, agreed=1, latency_delta_s=0.003)
    c.record_shadow("fraud", "fraud", 4, compared=0, agreed=0, latency_delta_s=None)
    c.record_shadow_drop("fraud", "fraud", 4)
    rows = {(r.route, r.model, r.version): r.stats for r in c.take(everything=True)}
    assert rows[(ENDPOINT_ROUTE, "", 0)].fallbacks == {"timeout": 1}
    assert rows[("candidate", "", 0)].fallbacks == {"timeout": 1}
    shadow = rows[(SHADOW_ROUTE, "fraud", 4)].shadow
    assert shadow is not None
    assert (shadow.compared, shadow.agreed, shadow.primary_failed, shadow.dropped) == (2, 1, 1, 1)
    assert shadow.mean_latency_delta_s == pytest.approx(0.003)
    assert shadow.agreement == 0.5


def test_restore_merges_and_bounds(clock: FakeClock) -> None:
    c = StatsCollector(interval_s=1, replica="r", clock=clock, max_pending_intervals=3)
    for _ in range(5):
        c.on_infer(event())
        clock.advance(1)
    rows = c.take()
    assert len(rows) == 5
    c.on_infer(event())
    c.restore(rows)
    kept = c.take(everything=True)
    # Six intervals (five restored, the current one): the three oldest are dropped, counted.
    assert [r.interval_start for r in kept] == [WALL0 + 3, WALL0 + 4, WALL0 + 5]
    assert c.dropped_intervals == 3


def test_bad_interval() -> None:
    with pytest.raises(InvalidInputError, match="stats_interval_s"):
        StatsCollector(interval_s=0, replica="r")


# ---- registry rows -------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> Registry:
    reg = Registry(tmp_path / "reg", clock=clock)
    yield reg  # type: ignore[misc]
    reg.close()


def test_write_read_merge_across_replicas(registry: Registry, clock: FakeClock) -> None:
    a = StatsCollector(interval_s=10, replica="a", clock=clock)
    b = StatsCollector(interval_s=10, replica="b", clock=clock)
    for i in range(30):
        (a if i % 2 else b).on_infer(event(0.001 * (i + 1)))
    b.on_infer(event(code="INTERNAL"))
    b.on_infer(event(endpoint="other"))
    clock.advance(10)
    StatsWriter(registry, a, clock=clock).flush()
    StatsWriter(registry, b, clock=clock).flush()
    rows = read_rows(registry, "fraud", since=WALL0 - 1)
    assert {r.replica for r in rows} == {"a", "b"}
    total = merge_rows(rows)
    assert total.requests == 31 and total.failures() == 1
    assert total.latency.total == 30
    assert read_rows(registry, "fraud", since=WALL0) == []  # strictly after


def test_rewriting_a_row_replaces_it(registry: Registry) -> None:
    row = StatsRow("a", WALL0, "fraud", "a", "fraud", 3, RouteStats(requests=5))
    write_rows(registry, [row], 10)
    write_rows(
        registry, [StatsRow("a", WALL0, "fraud", "a", "fraud", 3, RouteStats(requests=7))], 10
    )
    (back,) = read_rows(registry, "fraud", since=0)
    assert back.stats.requests == 7


def test_failed_write_keeps_rows(registry: Registry, clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="a", clock=clock)
    c.on_infer(event())
    clock.advance(10)
    writer = StatsWriter(registry, c, clock=clock)
    registry.close()
    with pytest.raises(Exception, match="closed"):
        writer.flush()
    assert len(c.take(everything=True)) == 1


def test_prune(registry: Registry) -> None:
    old = StatsRow("a", WALL0 - 100, "fraud", "a", "fraud", 3, RouteStats(requests=1))
    new = StatsRow("a", WALL0, "fraud", "a", "fraud", 3, RouteStats(requests=1))
    write_rows(registry, [old, new], 10)
    assert prune_rows(registry, WALL0 - 50) == 1
    assert [r.interval_start for r in read_rows(registry, "fraud", since=0)] == [WALL0]


def test_next_flush_is_just_after_the_interval_ends(registry: Registry, clock: FakeClock) -> None:
    c = StatsCollector(interval_s=10, replica="a", clock=clock)
    writer = StatsWriter(registry, c, clock=clock)
    clock.advance(3)
    assert writer.seconds_to_next_flush() == pytest.approx(7 + 0.25)
