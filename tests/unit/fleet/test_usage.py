"""Usage recording: counts and last request times per version, flushed to the registry
(accumulated across flushes and replicas), first-request latencies, and the idle query."""

from __future__ import annotations

import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import CacheKey
from modelyard.core.observer import CacheEvent, InferEvent
from modelyard.core.usage import UsageRecorder, idle_versions
from modelyard.errors import InvalidInputError, UnavailableError
from modelyard.registry import Registry
from modelyard.types import InferRequest, RequestContext
from tests.unit.registry.fakes import FakeModel

DAY = 86400.0


def event(model: str, version: str, code: str = "OK", latency: float = 0.01) -> InferEvent:
    return InferEvent(
        endpoint=model,
        model=model,
        version=version,
        route="",
        code=code,
        latency_s=latency,
        request=InferRequest({}),
        response=None,
        ctx=RequestContext(),
    )


def usage_rows(registry: Registry) -> list[tuple[object, ...]]:
    with registry.store.transaction(write=False) as tx:
        return tx.execute(
            "SELECT model, version, last_request_at, requests FROM model_usage "
            "ORDER BY model, version"
        ).rows


def test_counts_are_flushed_and_accumulate(registry: Registry, clock: FakeClock) -> None:
    rec = UsageRecorder(registry, clock=clock)
    t0 = clock.wall()
    for _ in range(3):
        rec.on_infer(event("a", "1"))
    clock.advance(5)
    rec.on_infer(event("a", "2", code="INVALID_ARGUMENT"))  # an error is still traffic
    rec.on_infer(event("a", ""))  # never resolved: no version to count
    assert rec.pending() == {("a", "1"): (3, t0), ("a", "2"): (1, t0 + 5)}
    assert rec.flush() == 2
    assert rec.flush() == 0 and rec.pending() == {}
    clock.advance(5)
    rec.on_infer(event("a", "1"))
    other = UsageRecorder(registry, clock=FakeClock(wall_start=t0 - 100))  # a replica, behind
    other.on_infer(event("a", "1"))
    rec.flush()
    other.flush()
    assert usage_rows(registry) == [("a", 1, t0 + 10, 5), ("a", 2, t0 + 5, 1)]
    assert rec.flushed_rows == 3


def test_a_failed_flush_keeps_the_counts(registry: Registry, clock: FakeClock) -> None:
    rec = UsageRecorder(registry, clock=clock)
    rec.on_infer(event("a", "1"))

    def down(**kwargs: object) -> object:
        raise UnavailableError("registry database error")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry.store, "transaction", down)
        assert rec.flush() == 0
    rec.on_infer(event("a", "1"))
    assert rec.pending() == {("a", "1"): (2, clock.wall())}
    assert rec.flush() == 1
    assert usage_rows(registry)[0][3] == 2


def test_first_request_latency_resets_when_the_version_loads_again(
    registry: Registry, clock: FakeClock
) -> None:
    rec = UsageRecorder(registry, clock=clock)
    rec.on_infer(event("a", "1", code="UNAVAILABLE", latency=9.0))  # failures do not count
    rec.on_infer(event("a", "1", latency=0.5))
    rec.on_infer(event("a", "1", latency=0.001))
    assert rec.first_request_s(CacheKey("a", 1)) == 0.5
    rec.on_cache(CacheEvent("evict", "a", "1"))
    assert rec.first_request_s(CacheKey("a", 1)) == 0.5
    rec.on_cache(CacheEvent("load", "a", "1", seconds=0.2))
    assert rec.first_request_s(CacheKey("a", 1)) is None
    rec.on_infer(event("a", "1", latency=0.3))
    assert rec.first_request_s(CacheKey("a", 1)) == 0.3


def test_first_request_latency_per_version_and_after_every_load(
    registry: Registry, clock: FakeClock
) -> None:
    rec = UsageRecorder(registry, clock=clock)
    rec.on_infer(event("a", "1", latency=0.5))
    rec.on_infer(event("a", "2", latency=0.7))
    rec.on_infer(event("a", "latest", latency=0.9))  # not a version number: no cold start
    rec.on_cache(CacheEvent("load", "a", "2"))  # another version reloads: "1" keeps its own
    rec.on_infer(event("a", "1", latency=0.001))
    rec.on_infer(event("a", "2", latency=0.2))
    assert rec.first_request_s(CacheKey("a", 1)) == 0.5
    assert rec.first_request_s(CacheKey("a", 2)) == 0.2
    for _ in range(2):  # every load makes the next request a cold start again
        rec.on_cache(CacheEvent("load", "a", "1"))
        assert rec.first_request_s(CacheKey("a", 1)) is None
        rec.on_infer(event("a", "1", latency=0.25))
        rec.on_infer(event("a", "1", latency=0.125))
        assert rec.first_request_s(CacheKey("a", 1)) == 0.25
    assert rec.pending()[("a", "1")][0] == 6


def test_idle_versions(registry: Registry, clock: FakeClock) -> None:
    registry.push(FakeModel(), name="busy", alias="production")
    registry.push(FakeModel(), name="quiet", alias="production")
    registry.push(FakeModel(), name="quiet")
    registry.push(FakeModel(), name="unused")
    rec = UsageRecorder(registry, clock=clock)
    rec.on_infer(event("quiet", "1"))
    rec.flush()
    clock.advance(10 * DAY)
    rec.on_infer(event("busy", "1"))
    rec.flush()
    found = {(u.model, u.version): u for u in idle_versions(registry, days=7)}
    assert set(found) == {("quiet", 1), ("quiet", 2), ("unused", 1)}
    assert found["quiet", 1].aliases == ("production",)
    assert found["quiet", 1].requests == 1
    assert found["quiet", 1].last_request_at == clock.wall() - 10 * DAY
    assert found["quiet", 2].last_request_at is None and found["quiet", 2].requests == 0
    assert {(u.model, u.version) for u in idle_versions(registry, days=11)} == set()
    with pytest.raises(InvalidInputError, match="days"):
        idle_versions(registry, days=-1)
