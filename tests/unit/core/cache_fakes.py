"""Fakes for the model cache tests: a runtime with a chosen size and a loader that counts calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.types import Array

T = TypeVar("T")
WAIT_S = 10.0  # upper bound for events that must happen; never reached when the code is right


class FakeRuntime(Runtime):
    kind = "fake"

    def __init__(
        self,
        key: CacheKey,
        size: int,
        *,
        clock: FakeClock | None = None,
        warmup_s: float = 0.0,
        warmup_error: BaseException | None = None,
    ) -> None:
        super().__init__(Path("."), Manifest(runtime="fake"), RuntimeOptions())
        self.key = key
        self.size = size
        self.clock = clock
        self.warmup_s = warmup_s
        self.warmup_error = warmup_error
        self.warmup_thread: threading.Thread | None = None
        self.unload_calls = 0
        self.unloaded = threading.Event()

    def load(self) -> None:
        pass

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return dict(inputs)

    def memory_bytes(self) -> int:
        return self.size

    def warmup(self) -> None:
        self.warmup_thread = threading.current_thread()
        if self.clock is not None:
            self.clock.advance(self.warmup_s)
        if self.warmup_error is not None:
            raise self.warmup_error

    def unload(self) -> None:
        self.unload_calls += 1
        self.unloaded.set()


class FakeLoader:
    """Counts calls; builds FakeRuntimes sized by ``sizes`` (model name -> bytes).

    ``gate`` (when set) makes every call block until the test opens it; ``errors`` are raised by
    the next calls, one each; ``load_s`` advances the clock inside the call.
    """

    def __init__(
        self,
        sizes: Mapping[str, int] | None = None,
        *,
        default_size: int = 10,
        clock: FakeClock | None = None,
        load_s: float = 0.0,
        warmup_s: float = 0.0,
    ) -> None:
        self.sizes = dict(sizes or {})
        self.default_size = default_size
        self.clock = clock
        self.load_s = load_s
        self.warmup_s = warmup_s
        self.warmup_error: BaseException | None = None
        self.gate: threading.Event | None = None
        self.errors: list[BaseException] = []
        self.calls: list[CacheKey] = []
        self.threads: list[threading.Thread] = []
        self.runtimes: list[FakeRuntime] = []
        self.make: Callable[[CacheKey], Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, key: CacheKey) -> Runtime:
        with self._lock:
            self.calls.append(key)
            self.threads.append(threading.current_thread())
            error = self.errors.pop(0) if self.errors else None
        if self.gate is not None:
            assert self.gate.wait(WAIT_S), "test never opened the loader gate"
        if error is not None:
            raise error
        if self.make is not None:
            made: Runtime = self.make(key)
            return made
        if self.clock is not None:
            self.clock.advance(self.load_s)
        rt = FakeRuntime(
            key,
            self.sizes.get(key.model, self.default_size),
            clock=self.clock,
            warmup_s=self.warmup_s,
            warmup_error=self.warmup_error,
        )
        with self._lock:
            self.runtimes.append(rt)
        return rt

    def by_model(self, model: str) -> list[FakeRuntime]:
        return [rt for rt in self.runtimes if rt.key.model == model]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def wait_for(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate`` holds (a condition other threads make true), failing after
    WAIT_S. Used only where no event can be observed (threads blocked inside the cache)."""
    idle = threading.Event()
    for _ in range(int(WAIT_S * 1000)):
        if predicate():
            return
        idle.wait(0.001)
    raise AssertionError("condition never became true")


async def yield_to_loop(times: int = 20) -> None:
    """Let every ready callback run; pending work that depends on the test stays pending."""
    for _ in range(times):
        await asyncio.sleep(0)


MakeCache = Callable[..., tuple[ModelCache, FakeLoader, FakeClock]]


def cache_factory() -> Iterator[MakeCache]:
    """Body of the ``make_cache`` fixture: builds caches (FakeClock, FakeLoader); on teardown
    closes them and checks that every runtime ever built was unloaded exactly once."""
    built: list[tuple[ModelCache, FakeLoader]] = []

    def make(
        sizes: dict[str, int] | None = None, budget: int = 100, **kwargs: Any
    ) -> tuple[ModelCache, FakeLoader, FakeClock]:
        clock = FakeClock()
        loader = FakeLoader(sizes, clock=clock)
        cache = ModelCache(loader, budget_bytes=budget, clock=clock, **kwargs)
        built.append((cache, loader))
        return cache, loader, clock

    yield make
    for cache, loader in built:
        cache.close()
        assert [rt.unload_calls for rt in loader.runtimes] == [1] * len(loader.runtimes)
