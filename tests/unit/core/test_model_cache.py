"""The model cache: single-flight loads, warm-up, byte budget, failures, counters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.core.model_cache import CacheKey, CacheState, ModelCache
from modelyard.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
)
from modelyard.runtime import Runtime

from .cache_fakes import FakeLoader, FakeRuntime, MakeCache, cache_factory, run, wait_for

A, B, C = CacheKey("a", 1), CacheKey("b", 1), CacheKey("c", 1)


@pytest.fixture
def make_cache() -> Iterator[MakeCache]:
    yield from cache_factory()


# ---- single flight ---------------------------------------------------------------------------
def test_fifty_concurrent_first_gets_cause_one_load(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()

    async def open_gate() -> None:
        # gather starts tasks in order, so every get has joined the load before this runs
        assert cache.stats.misses == 50
        loader.gate.set()  # type: ignore[union-attr]

    async def main() -> list[Any]:
        return await asyncio.gather(*[cache.get(A) for _ in range(50)], open_gate())

    runtimes = run(main())[:50]
    assert len(loader.calls) == 1
    assert all(rt is runtimes[0] for rt in runtimes)
    stats = cache.stats
    assert (stats.loads, stats.misses, stats.hits, stats.load_failures) == (1, 50, 0, 0)


def test_fifty_threads_first_get_sync_cause_one_load(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()
    results: list[Runtime] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_sync(A))) for _ in range(50)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: cache.stats.misses == 50)  # all 50 joined the one in-progress load
    loader.gate.set()
    for t in threads:
        t.join()
    assert len(loader.calls) == 1
    assert len(results) == 50
    assert all(rt is loader.runtimes[0] for rt in results)


def test_hit_returns_without_suspending(make_cache: MakeCache) -> None:
    cache, _, _ = make_cache()
    runtime = run(cache.load(A))
    coro = cache.get(A)
    with pytest.raises(StopIteration) as done:  # completes on the first step: no await, no hop
        coro.send(None)
    assert done.value.value is runtime
    assert cache.get_sync(A) is runtime
    assert (cache.stats.hits, cache.stats.misses, cache.stats.loads) == (2, 0, 1)


def test_cancelled_waiter_does_not_cancel_the_load(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()

    async def main() -> Runtime:
        first = asyncio.ensure_future(cache.get(A))
        second = asyncio.ensure_future(cache.get(A))
        await asyncio.sleep(0)
        first.cancel()
        loader.gate.set()  # type: ignore[union-attr]
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert run(main()) is loader.runtimes[0]
    assert cache.is_loaded(A)


# ---- warm-up and timings ---------------------------------------------------------------------
def test_warmup_runs_in_the_load_thread_and_is_timed(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache({"a": 30})
    loader.load_s, loader.warmup_s = 2.0, 0.5
    runtime = run(cache.get(A))
    assert isinstance(runtime, FakeRuntime)
    assert runtime.warmup_thread is loader.threads[0]
    assert runtime.warmup_thread is not threading.current_thread()
    [info] = cache.entries()
    assert (info.key, info.state, info.bytes, info.in_flight) == (A, CacheState.READY, 30, 0)
    assert (info.load_seconds, info.warmup_seconds) == (2.0, 0.5)
    assert info.loaded_at == clock.wall()
    assert cache.stats.load_seconds_total == 2.5
    assert cache.stats.bytes_in_use == 30


def test_warmup_failure_is_a_load_failure(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.warmup_error = ValueError("bad example")
    with pytest.raises(ModelLoadError, match="warm up model a:1") as failed:
        run(cache.get(A))
    assert isinstance(failed.value.__cause__, ValueError)
    assert loader.runtimes[0].unload_calls == 1
    assert not cache.is_loaded(A)
    assert (cache.stats.load_failures, cache.stats.bytes_in_use) == (1, 0)


# ---- byte budget -----------------------------------------------------------------------------
def test_least_recently_used_entry_is_evicted(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache({"a": 40, "b": 40, "c": 40})
    run(cache.get(A))
    clock.advance(1)
    run(cache.get(B))
    clock.advance(1)
    run(cache.get(A))  # a is now more recent than b
    clock.advance(1)
    run(cache.get(C))
    [b] = loader.by_model("b")
    assert b.unloaded.wait(5)
    assert [cache.is_loaded(k) for k in (A, B, C)] == [True, False, True]
    stats = cache.stats
    assert (stats.evictions, stats.bytes_in_use, stats.loads, stats.hits) == (1, 80, 3, 1)


def test_leased_entry_is_not_evicted_and_budget_is_met_after_release(
    make_cache: MakeCache,
) -> None:
    cache, loader, clock = make_cache({"a": 60, "b": 60})

    async def main() -> None:
        async with cache.lease(A):
            clock.advance(1)
            await cache.get(B)  # over budget: a is in flight, b is new; keep both
            assert cache.is_loaded(A) and cache.is_loaded(B)
            assert cache.stats.bytes_in_use == 120
            assert [e.in_flight for e in cache.entries() if e.key == A] == [1]
        # a's lease ended last, so b is now the least recently used

    run(main())
    [b] = loader.by_model("b")
    assert b.unloaded.wait(5)
    assert cache.is_loaded(A) and not cache.is_loaded(B)
    assert (cache.stats.evictions, cache.stats.bytes_in_use) == (1, 60)


def test_sync_lease_protects_from_eviction(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache({"a": 60, "b": 60})
    with cache.lease_sync(A) as runtime:
        cache.get_sync(B)
        assert cache.is_loaded(A) and runtime.unload_calls == 0  # type: ignore[attr-defined]
    assert loader.by_model("b")[0].unloaded.wait(5)


def test_pinned_entry_is_never_evicted(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache({"a": 60, "b": 60})
    cache.pin(A)
    run(cache.get(A))
    clock.advance(1)
    run(cache.get(B))  # over budget, a pinned and b new: keep both
    assert cache.stats.bytes_in_use == 120
    assert [e.pinned for e in cache.entries()] == [True, False]
    cache.unpin(A)  # a is least recently used and evictable again
    assert loader.by_model("a")[0].unloaded.wait(5)
    assert not cache.is_loaded(A) and cache.is_loaded(B)
    assert cache.stats.evictions == 1


def test_model_larger_than_budget_is_refused(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache({"a": 101})
    with pytest.raises(ModelTooLargeError, match=r"101 bytes.*budget_bytes=100"):
        run(cache.get(A))
    assert loader.runtimes[0].unload_calls == 1
    assert (cache.stats.load_failures, cache.stats.bytes_in_use) == (1, 0)
    assert [e.state for e in cache.entries()] == [CacheState.FAILED]


# ---- load failures ---------------------------------------------------------------------------
def test_failure_is_remembered_for_ttl_then_retried(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache(failure_ttl_s=10.0)
    loader.errors = [OSError("disk on fire")]
    for _ in range(10):
        with pytest.raises(ModelLoadError, match="disk on fire") as failed:
            run(cache.get(A))
        assert isinstance(failed.value.__cause__, OSError)
        clock.advance(0.5)
    assert len(loader.calls) == 1
    assert (cache.stats.load_failures, cache.stats.misses) == (1, 10)
    clock.advance(10.0)
    assert run(cache.get(A)) is loader.runtimes[0]
    assert len(loader.calls) == 2


def test_concurrent_waiters_all_see_the_failure(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()
    loader.errors = [RuntimeError("boom")]

    async def open_gate() -> None:
        loader.gate.set()  # type: ignore[union-attr]

    async def main() -> list[Any]:
        gets = [cache.get(A) for _ in range(10)]
        return await asyncio.gather(*gets, open_gate(), return_exceptions=True)

    errors = run(main())[:10]
    assert all(isinstance(e, ModelLoadError) for e in errors)
    assert len(loader.calls) == 1


def test_modelyard_errors_from_the_loader_pass_through(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    error = ModelNotFoundError("no a:1")
    loader.errors = [error]
    with pytest.raises(ModelNotFoundError) as failed:
        cache.get_sync(A)
    assert failed.value is error
    with pytest.raises(ModelNotFoundError):  # remembered as it is
        cache.get_sync(A)


def test_a_file_failing_verification_is_a_load_error_named_only_in_the_log(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache, loader, _ = make_cache()
    detail = "a:1 (s3://bucket/reg/a/1): file 'model.onnx' has sha256 1da5, expected 272b"
    loader.errors = [ChecksumMismatchError(detail)]
    with caplog.at_level(logging.WARNING), pytest.raises(ModelLoadError) as failed:
        cache.get_sync(A)
    assert failed.value.message == (
        "model a:1 cannot be served: a file of it failed verification (the server log names it)"
    )
    assert detail in caplog.text  # the store URL and hashes: for operators, not clients


def test_failed_lease_gives_its_reservation_back(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.errors = [RuntimeError("boom")]

    async def main() -> None:
        with pytest.raises(ModelLoadError):
            async with cache.lease(A):
                pass

    run(main())
    assert [e.in_flight for e in cache.entries()] == [0]


def test_explicit_load_retries_a_remembered_failure(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.errors = [RuntimeError("boom")]
    with pytest.raises(ModelLoadError):
        run(cache.load(A))
    assert run(cache.load(A)) is loader.runtimes[0]
    assert (len(loader.calls), cache.stats.hits, cache.stats.misses) == (2, 0, 0)


def test_loader_returning_a_non_runtime_is_a_load_error(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.make = lambda key: object()
    with pytest.raises(ModelLoadError, match="loader returned object for a:1"):
        cache.get_sync(A)


def test_bad_memory_estimate_is_a_load_error(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache({"a": -5})
    with pytest.raises(ModelLoadError, match=r"memory_bytes\(\) of a:1 returned -5"):
        cache.get_sync(A)
    assert loader.runtimes[0].unload_calls == 1


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "version", "field"),
    [("", 1, "CacheKey.model"), ("a", -1, "CacheKey.version"), ("a", True, "CacheKey.version")],
)
def test_bad_cache_key_names_the_field(model: str, version: int, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        CacheKey(model, version)


def test_cache_key_str() -> None:
    assert str(CacheKey("fraud", 3)) == "fraud:3"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget_bytes": 0}, "budget_bytes"),
        ({"budget_bytes": 10, "idle_ttl_s": 0}, "idle_ttl_s"),
        ({"budget_bytes": 10, "failure_ttl_s": -1}, "failure_ttl_s"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        ModelCache(FakeLoader(), **kwargs)


def test_each_failed_load_attempt_is_logged_once(
    make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache, loader, clock = make_cache(failure_ttl_s=10.0)
    loader.errors = [OSError("disk on fire")]
    caplog.set_level("WARNING", logger="modelyard.core.model_cache")
    for _ in range(5):  # one attempt, then four requests that hit the remembered failure
        with pytest.raises(ModelLoadError):
            cache.get_sync(A)
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "a:1" in record.getMessage() and "disk on fire" in record.getMessage()
    caplog.clear()
    loader.warmup_error = ValueError("bad example")
    clock.advance(10.0)  # the failure expires: a second attempt, failing in warm-up
    with pytest.raises(ModelLoadError):
        cache.get_sync(A)
    [record] = caplog.records
    assert "warm up model a:1" in record.getMessage() and "bad example" in record.getMessage()
