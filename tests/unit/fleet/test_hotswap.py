"""The hot swapper: load and warm the new version, switch, drain and unload the old one; keep
serving the old one when the new one does not load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.hotswap import HotSwapper, WatchedResolver
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.registry import Registry
from tests.unit.core.cache_fakes import FakeLoader
from tests.unit.registry.fakes import FakeModel

K1, K2 = CacheKey("m", 1), CacheKey("m", 2)


@dataclass
class Rig:
    registry: Registry
    cache: ModelCache
    loader: FakeLoader
    resolver: WatchedResolver
    swapper: HotSwapper
    clock: FakeClock

    def served(self, ref: str | None = None) -> int:
        return self.resolver.resolve_sync("m", ref).version


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(registry: Registry, clock: FakeClock) -> Iterator[MakeRig]:
    caches: list[ModelCache] = []

    def make(preload: tuple[str, ...] = ()) -> Rig:
        loader = FakeLoader(clock=clock)
        cache = ModelCache(loader, budget_bytes=1000, clock=clock)
        caches.append(cache)
        resolver = WatchedResolver(registry, ttl_s=1.0, clock=clock, live=lambda: True)
        swapper = HotSwapper(
            registry, cache, resolver, preload=preload, retry_after_s=10.0, clock=clock
        )
        return Rig(registry, cache, loader, resolver, swapper, clock)

    yield make
    for cache in caches:
        cache.close()


def test_a_moved_alias_loads_warms_switches_and_unloads(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m", alias="production")
    assert rig.served() == 1 and rig.served("production") == 1

    async def main() -> None:
        await rig.cache.load(K1)
        rig.registry.push(FakeModel(), name="m", alias="production")
        swaps = await rig.swapper.refresh()
        assert [(s.model, s.old, s.new, s.warmed) for s in swaps] == [("m", (1,), 2, True)]
        assert set(swaps[0].names) == {("m", None), ("m", "production")}

    asyncio.run(main())
    assert rig.served() == 2 and rig.served("production") == 2
    assert rig.loader.calls == [K1, K2]
    assert rig.cache.is_loaded(K2) and not rig.cache.is_loaded(K1)
    assert rig.loader.by_model("m")[0].unload_calls == 1
    assert rig.resolver.cached("m", None) is not None
    assert rig.resolver.cached("m", None).aliases == ("production",)  # type: ignore[union-attr]
    assert [s.new for s in rig.swapper.history] == [2]


def test_an_old_version_that_was_not_loaded_switches_without_loading(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m")
    assert rig.served() == 1
    rig.registry.push(FakeModel(), name="m")
    swaps = asyncio.run(rig.swapper.refresh())
    assert [(s.old, s.new, s.warmed) for s in swaps] == [((1,), 2, False)]
    assert rig.served() == 2 and rig.loader.calls == []


def test_the_old_version_drains_before_it_is_unloaded(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m")
    rig.served()

    async def main() -> None:
        async with rig.cache.lease(K1):
            rig.registry.push(FakeModel(), name="m")
            refresh = asyncio.create_task(rig.swapper.refresh())
            # v2 loads on a worker thread: wait (bounded) until the resolver points at it
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while rig.resolver.cached("m", None).version != 2:  # type: ignore[union-attr]
                assert loop.time() < deadline, "the swap never switched to v2"
                await asyncio.sleep(0.005)
            assert rig.served() == 2  # new requests already go to v2 ...
            assert not refresh.done()  # ... while the swap waits for this request on v1
            assert rig.loader.by_model("m")[0].unload_calls == 0
        await asyncio.wait_for(refresh, 10)

    asyncio.run(main())
    assert rig.loader.by_model("m")[0].unload_calls == 1


def test_a_new_version_that_fails_to_load_is_not_switched_to(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m", alias="production")
    rig.served()

    async def main() -> None:
        await rig.cache.load(K1)
        rig.registry.set_alias("m", "production", rig.registry.push(FakeModel(), name="m").version)
        rig.loader.errors.append(RuntimeError("corrupt weights"))
        assert await rig.swapper.refresh() == []
        assert rig.served() == 1 and rig.cache.is_loaded(K1)
        assert await rig.swapper.refresh() == []  # not retried before retry_after_s
        assert rig.loader.calls == [K1, K2]
        rig.clock.advance(11)
        swaps = await rig.swapper.refresh()
        assert [s.new for s in swaps] == [2]

    asyncio.run(main())
    assert rig.served() == 2 and not rig.cache.is_loaded(K1)


def test_pins_move_to_the_new_version(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m")
    rig.served()

    async def main() -> None:
        await rig.cache.load(K1)
        rig.cache.pin(K1)
        rig.registry.push(FakeModel(), name="m")
        await rig.swapper.refresh()

    asyncio.run(main())
    pinned = {e.key: e.pinned for e in rig.cache.entries()}
    assert pinned == {K2: True}


def test_preloaded_names_follow_their_alias_warm(make_rig: MakeRig) -> None:
    rig = make_rig(preload=("m@production",))
    rig.registry.push(FakeModel(), name="m", alias="production")

    async def main() -> None:
        await rig.swapper.refresh()  # first refresh: resolves (and loads) the preloaded name
        assert rig.resolver.cached("m", "production").version == 1  # type: ignore[union-attr]
        rig.registry.push(FakeModel(), name="m", alias="production")
        await rig.swapper.refresh()

    asyncio.run(main())
    assert rig.loader.calls == [K1, K2]
    assert rig.cache.is_loaded(K2) and not rig.cache.is_loaded(K1)
    assert [s.old for s in rig.swapper.history] == [(1,)]  # the first resolution is no swap


def test_explicit_versions_stay_and_deleted_aliases_are_forgotten(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.push(FakeModel(), name="m", alias="candidate")
    assert rig.served("1") == 1 and rig.served("candidate") == 1

    async def main() -> None:
        await rig.cache.load(K1)
        rig.registry.push(FakeModel(), name="m")
        rig.registry.delete_alias("m", "candidate")
        assert await rig.swapper.refresh() == []

    asyncio.run(main())
    assert rig.resolver.cached("m", "candidate") is None
    assert rig.resolver.cached("m", "1") is not None
    assert rig.cache.is_loaded(K1)  # still named by "m:1"
