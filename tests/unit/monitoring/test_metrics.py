"""Prometheus metrics fed by observer events, in one process (registry per test, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from modelyard.app import make_loader
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.core.observer import BatchEvent, CacheEvent, InferEvent, Observers
from modelyard.core.serving import ServingDataPlane
from modelyard.errors import ModelNotFoundError
from modelyard.monitoring.metrics import (
    LATENCY_BUCKETS,
    OTHER,
    UNKNOWN,
    LabelLimiter,
    Metrics,
    MetricsObserver,
    process_usage,
)
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.types import Array, InferRequest, RequestContext
from tests.testmodels import linear_fp32_model, simple_model
from tests.unit.core.cache_fakes import FakeLoader


def make_observer(limit: int = 200, **kwargs: object) -> MetricsObserver:
    return MetricsObserver(Metrics(CollectorRegistry(), max_label_values=limit), **kwargs)  # type: ignore[arg-type]


def value(obs: MetricsObserver, name: str, **labels: str) -> float | None:
    obs.flush()  # request and batch values are buffered until a scrape (or the 1 s flush)
    return obs.metrics.registry.get_sample_value(name, labels)


def event(
    model: str = "m",
    *,
    endpoint: str | None = None,
    version: str = "1",
    route: str = "",
    code: str = "OK",
    latency: float = 0.01,
) -> InferEvent:
    return InferEvent(
        endpoint=endpoint if endpoint is not None else model,
        model=model,
        version=version,
        route=route,
        code=code,
        latency_s=latency,
        request=InferRequest(inputs={}),
        response=None,
        ctx=RequestContext(),
    )


def exposition(obs: MetricsObserver) -> str:
    obs.flush()
    return obs.metrics.render().decode()


# ---- requests ------------------------------------------------------------------------------------
def test_requests_are_counted_per_endpoint_model_version_route_and_code() -> None:
    obs = make_observer()
    for _ in range(3):
        obs.on_infer(event("fraud", endpoint="checkout", route="canary", latency=0.003))
    obs.on_infer(event("fraud", endpoint="checkout", route="canary", code="DEADLINE_EXCEEDED"))
    labels = {"endpoint": "checkout", "model": "fraud", "version": "1", "route": "canary"}
    assert value(obs, "modelyard_requests_total", **labels, code="OK") == 3
    assert value(obs, "modelyard_requests_total", **labels, code="DEADLINE_EXCEEDED") == 1
    assert value(obs, "modelyard_request_duration_seconds_count", **labels) == 4
    assert value(obs, "modelyard_request_duration_seconds_bucket", **labels, le="0.005") == 3


@pytest.mark.parametrize("code", ["NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE"])
def test_names_that_did_not_resolve_never_create_series(code: str) -> None:
    obs = make_observer()
    for i in range(50):
        obs.on_infer(event(f"guess{i}", version="", code=code))
    text = exposition(obs)
    assert "guess" not in text
    labels = {"endpoint": UNKNOWN, "model": UNKNOWN, "version": "", "route": ""}
    assert value(obs, "modelyard_requests_total", **labels, code=code) == 50


def test_an_unknown_model_behind_a_known_endpoint_keeps_the_endpoint() -> None:
    obs = make_observer()
    obs.on_infer(event("gone", endpoint="checkout", route="b", version="", code="NOT_FOUND"))
    labels = {"endpoint": "checkout", "model": UNKNOWN, "version": "", "route": "b"}
    assert value(obs, "modelyard_requests_total", **labels, code="NOT_FOUND") == 1


def test_label_values_are_capped_per_label() -> None:
    obs = make_observer(limit=3)
    for i in range(6):
        obs.on_infer(event(f"m{i}"))
    assert value(obs, "modelyard_requests_total", endpoint="m2", model="m2", version="1",
                 route="", code="OK") == 1  # fmt: skip
    assert value(obs, "modelyard_requests_total", endpoint=OTHER, model=OTHER, version="1",
                 route="", code="OK") == 3  # fmt: skip
    assert "m5" not in exposition(obs)


def test_request_values_wait_for_the_flush() -> None:
    obs = make_observer()
    obs.on_infer(event("m"))
    labels = {"endpoint": "m", "model": "m", "version": "1", "route": "", "code": "OK"}
    assert obs.metrics.registry.get_sample_value("modelyard_requests_total", labels) == 0
    obs.flush()
    assert obs.metrics.registry.get_sample_value("modelyard_requests_total", labels) == 1
    obs.flush()  # nothing counted twice
    assert obs.metrics.registry.get_sample_value("modelyard_requests_total", labels) == 1


def test_buffered_histograms_match_direct_observation() -> None:
    latencies = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.04, 0.2, 7.0, 45.0, 0.1]
    buffered = make_observer()
    for latency in latencies:
        buffered.on_infer(event("m", latency=latency))
    direct = make_observer()
    child = direct.metrics.request_duration.labels("m", "m", "1", "")
    for latency in latencies:
        child.observe(latency)
    name = "modelyard_request_duration_seconds"
    histogram = [line for line in exposition(buffered).splitlines() if line.startswith(name)]
    expected = [line for line in exposition(direct).splitlines() if line.startswith(name)]
    assert histogram == expected and len(histogram) == len(LATENCY_BUCKETS) + 3


def test_series_beyond_the_cache_are_written_at_once() -> None:
    obs = make_observer()
    for i in range(10_001):
        obs.on_infer(event(f"guess{i}", version="", code="NOT_FOUND"))
    labels = {"endpoint": UNKNOWN, "model": UNKNOWN, "version": "", "route": ""}
    raw = obs.metrics.registry.get_sample_value
    assert raw("modelyard_requests_total", {**labels, "code": "NOT_FOUND"}) == 1  # unbuffered
    assert value(obs, "modelyard_requests_total", **labels, code="NOT_FOUND") == 10_001


def test_label_limiter_keeps_the_first_values() -> None:
    limit = LabelLimiter(2)
    assert [limit(v) for v in ["a", "b", "c", "a", "d", "b"]] == ["a", "b", OTHER, "a", OTHER, "b"]


# ---- batches, model cache, traffic ---------------------------------------------------------------
def test_batch_events_feed_queue_wait_batch_size_and_inference_time() -> None:
    obs = make_observer()
    obs.on_batch(BatchEvent("m", "2", rows=12, requests=3, queue_wait_s=0.002, infer_s=0.02))
    obs.on_batch(BatchEvent("m", "2", rows=1, requests=1, queue_wait_s=0.0, infer_s=0.004))
    mv = {"model": "m", "version": "2"}
    assert value(obs, "modelyard_batch_size_sum", **mv) == 13
    assert value(obs, "modelyard_batch_size_bucket", **mv, le="1.0") == 1
    assert value(obs, "modelyard_queue_wait_seconds_count", **mv) == 2
    assert value(obs, "modelyard_inference_duration_seconds_sum", **mv) == pytest.approx(0.024)


def test_cache_events_count_loads_failures_and_evictions_by_reason() -> None:
    obs = make_observer()
    obs.on_cache(CacheEvent("load", "m", "1", seconds=0.3, bytes=100))
    obs.on_cache(CacheEvent("load", "m", "2", seconds=0.7, bytes=100))
    obs.on_cache(CacheEvent("load_failure", "m", "3"))
    obs.on_cache(CacheEvent("evict", "m", "1", bytes=100))
    obs.on_cache(CacheEvent("idle_unload", "m", "2", bytes=100))
    obs.on_cache(CacheEvent("unload", "m", "2", bytes=100))
    assert value(obs, "modelyard_model_loads_total", model="m", version="1") == 1
    assert value(obs, "modelyard_model_load_seconds_count", model="m") == 2
    assert value(obs, "modelyard_model_load_seconds_sum", model="m") == pytest.approx(1.0)
    assert value(obs, "modelyard_model_load_failures_total", model="m", version="3") == 1
    for version, reason in [("1", "budget"), ("2", "idle"), ("2", "unload")]:
        labels = {"model": "m", "version": version, "reason": reason}
        assert value(obs, "modelyard_model_evictions_total", **labels) == 1


def test_traffic_hooks_count_fallbacks_response_cache_shadows_and_hedges() -> None:
    obs = make_observer()
    obs.on_fallback("checkout", "timeout")
    obs.on_fallback("checkout", "timeout")
    obs.on_cache_lookup("checkout", True)
    obs.on_cache_lookup("checkout", False)
    obs.on_cache_lookup("checkout", False)
    obs.on_shadow("checkout", "v2", "mismatch")
    obs.on_hedge("checkout", "sent")
    obs.on_hedge("checkout", "over_budget")
    obs.on_hedge("checkout", "over_budget")
    assert value(obs, "modelyard_fallbacks_total", endpoint="checkout", reason="timeout") == 2
    assert value(obs, "modelyard_response_cache_hits_total", endpoint="checkout") == 1
    assert value(obs, "modelyard_response_cache_misses_total", endpoint="checkout") == 2
    labels = {"endpoint": "checkout", "shadow": "v2", "outcome": "mismatch"}
    assert value(obs, "modelyard_shadow_comparisons_total", **labels) == 1
    assert value(obs, "modelyard_hedges_total", endpoint="checkout", outcome="sent") == 1
    assert value(obs, "modelyard_hedges_total", endpoint="checkout", outcome="over_budget") == 2


def test_endpoint_answers_count_what_clients_got() -> None:
    obs = make_observer()
    obs.on_answer("checkout", "OK", "route", 0.002)
    obs.on_answer("checkout", "OK", "fallback", 0.050)
    obs.on_answer("checkout", "OK", "cache", 0.0001)
    obs.on_answer("checkout", "INTERNAL", "none", 0.010)
    for code, source in [
        ("OK", "route"),
        ("OK", "fallback"),
        ("OK", "cache"),
        ("INTERNAL", "none"),
    ]:
        labels = {"endpoint": "checkout", "code": code, "source": source}
        assert value(obs, "modelyard_endpoint_responses_total", **labels) == 1
    count = "modelyard_endpoint_response_duration_seconds_count"
    assert value(obs, count, endpoint="checkout") == 4


# ---- through the real dataplane and model cache --------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "m" / "simple.onnx"), name="simple")
    linear = linear_fp32_model(tmp_path / "m" / "linear.onnx")
    reg.push(linear, name="linear_batched", batching={"max_batch_size": 8})
    yield reg
    reg.close()


def serve(
    registry: Registry, budget: int = 1 << 30, limit: int = 200
) -> tuple[ServingDataPlane, ModelCache, MetricsObserver]:
    cache = ModelCache(
        make_loader(registry, RuntimeOptions()), budget_bytes=budget, clock=FakeClock()
    )
    obs = make_observer(limit, cache=cache, in_flight=lambda: 7)
    dp = ServingDataPlane(registry, cache, resolve_ttl_s=0.0, observer=Observers([obs]))
    return dp, cache, obs


def simple_inputs() -> dict[str, Array]:
    return {n: np.ones((2, 16), dtype=np.int32) for n in ("INPUT0", "INPUT1")}


def linear_inputs() -> dict[str, Array]:
    return {"input": np.ones((3, 20), dtype=np.float32)}


def test_the_dataplane_reports_requests_batches_and_loads(registry: Registry) -> None:
    dp, cache, obs = serve(registry)

    async def main() -> None:
        for _ in range(4):
            await dp.infer("simple", None, InferRequest(simple_inputs()), RequestContext())
        await asyncio.gather(
            *(
                dp.infer("linear_batched", None, InferRequest(linear_inputs()), RequestContext())
                for _ in range(5)
            )
        )
        with pytest.raises(ModelNotFoundError):
            await dp.infer("nope", None, InferRequest(simple_inputs()), RequestContext())

    try:
        asyncio.run(main())
    finally:
        cache.close()
        dp.close()
    simple = {"endpoint": "simple", "model": "simple", "version": "1", "route": ""}
    assert value(obs, "modelyard_requests_total", **simple, code="OK") == 4
    batched = {**simple, "endpoint": "linear_batched", "model": "linear_batched"}
    assert value(obs, "modelyard_requests_total", **batched, code="OK") == 5
    unknown = {"endpoint": UNKNOWN, "model": UNKNOWN, "version": "", "route": ""}
    assert value(obs, "modelyard_requests_total", **unknown, code="NOT_FOUND") == 1
    # Unbatched: one predict per request of 2 rows; batched: 5 requests x 3 rows in batches.
    mv = {"model": "simple", "version": "1"}
    assert value(obs, "modelyard_batch_size_count", **mv) == 4
    assert value(obs, "modelyard_batch_size_sum", **mv) == 8
    assert value(obs, "modelyard_batch_size_sum", model="linear_batched", version="1") == 15
    assert value(obs, "modelyard_model_loads_total", **mv) == 1
    assert value(obs, "modelyard_model_loads_total", model="linear_batched", version="1") == 1


def test_model_cache_evictions_and_gauges_follow_the_cache(registry: Registry) -> None:
    dp, cache, obs = serve(registry)
    try:
        asyncio.run(cache.load(CacheKey("simple", 1)))
        one = cache.stats.bytes_in_use
        assert value(obs, "modelyard_loaded_models") == 1
        assert value(obs, "modelyard_model_cache_bytes") == one
        asyncio.run(cache.unload(CacheKey("simple", 1)))
        assert value(obs, "modelyard_loaded_models") == 0
        labels = {"model": "simple", "version": "1", "reason": "unload"}
        assert value(obs, "modelyard_model_evictions_total", **labels) == 1
        obs.sample()
        assert value(obs, "modelyard_in_flight_requests") == 7
        assert value(obs, "modelyard_model_cache_budget_bytes") == 1 << 30
        rss = value(obs, "modelyard_process_resident_memory_bytes")
        assert rss is not None and rss > 0
    finally:
        cache.close()
        dp.close()


def test_a_full_cache_evicts_by_budget_and_times_loads() -> None:
    clock = FakeClock()
    loader = FakeLoader({"a": 60, "b": 60}, clock=clock, load_s=0.5)
    cache = ModelCache(loader, budget_bytes=100, clock=clock)
    obs = make_observer(cache=cache)
    cache.on_event = obs.on_cache
    try:
        asyncio.run(cache.load(CacheKey("a", 1)))
        asyncio.run(cache.load(CacheKey("b", 1)))  # no room for both: a goes
    finally:
        cache.close()
    labels = {"model": "a", "version": "1", "reason": "budget"}
    assert value(obs, "modelyard_model_evictions_total", **labels) == 1
    assert value(obs, "modelyard_loaded_models") == 1
    assert value(obs, "modelyard_model_cache_bytes") == 60
    assert value(obs, "modelyard_model_load_seconds_sum", model="b") == 0.5


def test_process_usage_reads_memory_and_cpu() -> None:
    rss, cpu = process_usage()
    assert rss > 10 * 2**20
    assert cpu > 0
