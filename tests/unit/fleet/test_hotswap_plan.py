"""The hot swap's pure decision and its resolver: which names moved, and entries that change
only when switched (while the watcher runs) or after their TTL (when it does not)."""

from __future__ import annotations

import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.hotswap import (
    RefreshPlan,
    WatchedResolver,
    aliases_of,
    parse_preload,
    plan_refresh,
    target_version,
)
from modelyard.core.model_cache import CacheKey
from modelyard.registry import ModelInfo, Registry
from tests.unit.registry.fakes import FakeModel


def info(latest: int | None, **aliases: int) -> ModelInfo:
    return ModelInfo(name="m", created_at=0.0, latest_version=latest, aliases=aliases)


@pytest.mark.parametrize(
    ("model", "ref", "expected"),
    [
        (None, None, None),
        (info(3), None, 3),  # no production alias: the newest version
        (info(3, production=2), None, 2),
        (info(3, production=2), "production", 2),
        (info(3, production=2), "candidate", None),
        (info(3), "7", 7),  # a number names itself
        (info(None), None, None),
    ],
)
def test_target_version(model: ModelInfo | None, ref: str | None, expected: int | None) -> None:
    assert target_version(model, ref) == expected


@pytest.mark.parametrize(
    ("current", "infos", "swaps", "gone"),
    [
        ({("m", None): 1}, {"m": info(1)}, {}, []),
        ({("m", None): 1}, {"m": info(2)}, {("m", 2): [("m", None)]}, []),
        (
            {("m", None): 1, ("m", "production"): 1, ("m", "1"): 1},
            {"m": info(2, production=2)},
            {("m", 2): [("m", None), ("m", "production")]},
            [],
        ),
        ({("m", "production"): 1}, {"m": info(2)}, {}, [("m", "production")]),  # alias deleted
        ({("m", None): 1}, {}, {}, [("m", None)]),  # model gone
        ({("m", None): None}, {"m": info(4)}, {("m", 4): [("m", None)]}, []),  # preload seed
        ({("m", "candidate"): None}, {"m": info(4)}, {}, []),  # nothing to seed yet
    ],
)
def test_plan_refresh(
    current: dict[tuple[str, str | None], int | None],
    infos: dict[str, ModelInfo],
    swaps: dict[tuple[str, int], list[tuple[str, str | None]]],
    gone: list[tuple[str, str | None]],
) -> None:
    assert plan_refresh(current, infos) == RefreshPlan(swaps=swaps, gone=gone)


def test_aliases_of_and_parse_preload() -> None:
    assert aliases_of(info(3, b=2, a=2, c=3), 2) == ("a", "b")
    assert parse_preload(["m", "n@candidate"]) == [("m", None), ("n", "candidate")]


# ---- WatchedResolver ---------------------------------------------------------------------------
def test_entries_do_not_expire_while_live_and_do_after_ttl_otherwise(
    registry: Registry, clock: FakeClock
) -> None:
    live = [True]
    resolver = WatchedResolver(registry, ttl_s=1.0, clock=clock, live=lambda: live[0])
    registry.push(FakeModel(), name="m")
    assert resolver.resolve_sync("m", None).version == 1
    registry.push(FakeModel(), name="m")
    clock.advance(100)
    assert resolver.resolve_sync("m", None).version == 1  # only a switch changes it
    live[0] = False
    assert resolver.resolve_sync("m", None).version == 2  # expired: asks the registry


def test_switch_forget_serves_and_invalidate(registry: Registry, clock: FakeClock) -> None:
    resolver = WatchedResolver(registry, ttl_s=1.0, clock=clock, live=lambda: True)
    v1 = registry.push(FakeModel(), name="m")
    v2 = registry.push(FakeModel(), name="m")
    resolver.switch({("m", None): v1, ("m", "production"): v1})
    assert resolver.cached("m", None) == v1
    assert resolver.serves(CacheKey("m", 1)) and not resolver.serves(CacheKey("m", 2))
    resolver.switch({("m", None): v2})
    assert resolver.serves(CacheKey("m", 1))  # still via production
    resolver.forget([("m", "production")])
    assert not resolver.serves(CacheKey("m", 1))
    assert set(resolver.begin_refresh()) == {("m", None)}
    resolver.invalidate("m")
    assert resolver.cached("m", None) is None


def test_a_resolution_racing_a_switch_is_not_stored(registry: Registry, clock: FakeClock) -> None:
    resolver = WatchedResolver(registry, ttl_s=1.0, clock=clock, live=lambda: True)
    v1 = registry.push(FakeModel(), name="m")
    v2 = registry.push(FakeModel(), name="m", alias="production")
    real = registry.resolve

    def slow_resolve(name: str, ref: str | None = None) -> object:
        found = real(name, ref)
        resolver.switch({("m", None): v2})  # the swapper decides while this read is in flight
        return v1 if found.version == 2 else found

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "resolve", slow_resolve)
        assert resolver.resolve_sync("m", None) == v1  # this request got the old answer ...
    assert resolver.cached("m", None) == v2  # ... but it did not overwrite the switch
