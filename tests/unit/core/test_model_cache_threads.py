"""The model cache's own load threads (``load_threads``): loads beyond that many wait their
turn instead of running side by side."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.errors import InvalidInputError

from .cache_fakes import FakeLoader, MakeCache, cache_factory, wait_for

A, B = CacheKey("a", 1), CacheKey("b", 1)


@pytest.fixture
def make_cache() -> Iterator[MakeCache]:
    yield from cache_factory()


@pytest.mark.parametrize(("threads", "running_together"), [(1, 1), (2, 2)])
def test_loads_run_on_at_most_load_threads(
    make_cache: MakeCache, threads: int, running_together: int
) -> None:
    cache, loader, _ = make_cache(load_threads=threads)
    loader.gate = threading.Event()
    waiters = [threading.Thread(target=cache.get_sync, args=(k,)) for k in (A, B)]
    for t in waiters:
        t.start()
    wait_for(lambda: cache.stats.misses == 2)  # both requests are in, both loads submitted
    wait_for(lambda: len(loader.calls) == running_together)
    assert len(loader.calls) == running_together  # with 1 thread, b waits for a's load
    loader.gate.set()
    for t in waiters:
        t.join()
    assert sorted(k.model for k in loader.calls) == ["a", "b"]


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, None])
def test_load_threads_must_be_a_positive_int(threads: object) -> None:
    with pytest.raises(InvalidInputError, match="load_threads"):
        ModelCache(FakeLoader(), budget_bytes=100, load_threads=threads)  # type: ignore[arg-type]
