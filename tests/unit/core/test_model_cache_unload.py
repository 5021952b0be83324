"""The model cache: explicit unload (drain), idle unload, pins, close."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator

import pytest

from modelyard.core.model_cache import CacheKey, CacheState, ModelCache
from modelyard.errors import ModelLoadError, UnavailableError

from .cache_fakes import FakeLoader, MakeCache, cache_factory, run, wait_for, yield_to_loop

A, B, C, D = CacheKey("a", 1), CacheKey("b", 1), CacheKey("c", 1), CacheKey("d", 1)


@pytest.fixture
def make_cache() -> Iterator[MakeCache]:
    yield from cache_factory()


# ---- explicit unload -------------------------------------------------------------------------
def test_unload_waits_for_in_flight_leases(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()

    async def main() -> None:
        async with cache.lease(A):
            unloading = asyncio.ensure_future(cache.unload(A))
            await yield_to_loop()
            assert not unloading.done()
            assert loader.runtimes[0].unload_calls == 0
            assert [(e.state, e.in_flight) for e in cache.entries()] == [(CacheState.UNLOADING, 1)]
            assert not cache.is_loaded(A)
        assert await unloading is True

    run(main())
    assert loader.runtimes[0].unload_calls == 1
    assert (cache.stats.unloads, cache.stats.bytes_in_use, cache.entries()) == (1, 0, [])


def test_get_after_unload_starts_a_fresh_load(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()

    async def main() -> None:
        first = await cache.get(A)
        assert await cache.unload(A) is True
        second = await cache.get(A)
        assert second is not first

    run(main())
    assert len(loader.calls) == 2
    assert loader.runtimes[0].unload_calls == 1
    assert cache.is_loaded(A)


def test_requests_during_a_drain_do_not_wait_for_it(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()

    async def main() -> None:
        async with cache.lease(A) as old:
            unloading = asyncio.ensure_future(cache.unload(A))
            await yield_to_loop()
            assert await cache.get(A) is not old  # a fresh load, while the old one drains
            assert sorted(e.state for e in cache.entries()) == [
                CacheState.READY,
                CacheState.UNLOADING,
            ]
        await unloading

    run(main())
    assert [rt.unload_calls for rt in loader.runtimes] == [1, 0]


def test_unload_of_unknown_key_returns_false(make_cache: MakeCache) -> None:
    cache, _, _ = make_cache()
    assert run(cache.unload(A)) is False


def test_unload_forgets_a_remembered_failure(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache(failure_ttl_s=60.0)
    loader.errors = [RuntimeError("boom")]
    with pytest.raises(ModelLoadError):
        cache.get_sync(A)
    assert run(cache.unload(A)) is False
    assert cache.get_sync(A) is loader.runtimes[0]


def test_unload_during_a_load_waits_for_it_then_unloads(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()

    async def open_gate() -> None:
        loader.gate.set()  # type: ignore[union-attr]

    async def main() -> None:
        loaded, unloaded, _ = await asyncio.gather(cache.get(A), cache.unload(A), open_gate())
        assert loaded is loader.runtimes[0]
        assert unloaded is True

    run(main())
    assert loader.runtimes[0].unload_calls == 1
    assert not cache.is_loaded(A)


def test_unload_ignores_pins_but_keeps_them(make_cache: MakeCache) -> None:
    cache, _, _ = make_cache()
    cache.pin(A)
    assert run(cache.unload(A)) is False  # pinning does not load
    cache.get_sync(A)
    assert run(cache.unload(A)) is True
    cache.get_sync(A)
    assert [e.pinned for e in cache.entries()] == [True]


# ---- idle unload -----------------------------------------------------------------------------
def test_idle_entries_are_unloaded_after_ttl(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache(idle_ttl_s=30.0)
    cache.pin(C)

    async def main() -> None:
        for key in (A, B, C, D):
            await cache.get(key)
        async with cache.lease(B):
            clock.advance(20)
            await cache.get(D)  # used again: its idle time starts over
            clock.advance(10)
            assert cache.evict_idle() == [A]  # b in flight, c pinned, d recent
        clock.advance(30)
        assert set(cache.evict_idle()) == {B, D}

    run(main())
    for model in ("a", "b", "d"):
        assert loader.by_model(model)[0].unloaded.wait(5)
    assert [k for k in (A, B, C, D) if cache.is_loaded(k)] == [C]
    assert (cache.stats.idle_unloads, cache.stats.evictions, cache.stats.bytes_in_use) == (3, 0, 10)


def test_no_idle_ttl_means_no_idle_unload(make_cache: MakeCache) -> None:
    cache, _, clock = make_cache()
    cache.get_sync(A)
    clock.advance(1e9)
    assert cache.evict_idle() == []
    assert cache.is_loaded(A)


def test_evict_idle_forgets_expired_failures(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache(failure_ttl_s=5.0)
    loader.errors = [RuntimeError("boom")]
    with pytest.raises(ModelLoadError):
        cache.get_sync(A)
    clock.advance(4)
    cache.evict_idle()
    assert len(cache.entries()) == 1
    clock.advance(1)
    cache.evict_idle()
    assert cache.entries() == []


# ---- close -----------------------------------------------------------------------------------
def test_close_unloads_everything_and_refuses_new_requests(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    cache.get_sync(A)
    cache.get_sync(B)
    cache.close()
    assert [rt.unload_calls for rt in loader.runtimes] == [1, 1]
    assert cache.stats.bytes_in_use == 0
    with pytest.raises(UnavailableError, match="closed"):
        cache.get_sync(A)
    cache.close()  # idempotent


def test_close_during_a_load_unloads_the_late_runtime(make_cache: MakeCache) -> None:
    cache, loader, _ = make_cache()
    loader.gate = threading.Event()
    results: list[BaseException] = []

    def request() -> None:
        try:
            cache.get_sync(A)
        except UnavailableError as exc:
            results.append(exc)

    worker = threading.Thread(target=request)
    worker.start()
    wait_for(lambda: len(loader.calls) == 1)
    closer = threading.Thread(target=cache.close)
    closer.start()
    wait_for(lambda: cache.closed)
    loader.gate.set()
    closer.join()
    worker.join()
    assert [type(e) for e in results] == [UnavailableError]
    assert loader.runtimes[0].unload_calls == 1


def test_shared_executor_is_left_running() -> None:
    loader = FakeLoader()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        cache = ModelCache(loader, budget_bytes=100, executor=pool)
        cache.get_sync(A)
        cache.close()
        assert loader.runtimes[0].unload_calls == 1
        assert pool.submit(lambda: 7).result() == 7
