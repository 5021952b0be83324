"""``serve --preload``: every preloaded version is pinned (neither idleness nor the budget takes
it out; a hot swap moves the pin), and a preload set larger than the cache budget is said in
the log, not discovered later as evictions. With fakes for the registry and the model cache."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from modelyard.core.model_cache import CacheKey
from modelyard.server import _preload


@dataclass
class FakeCache:
    sizes: dict[str, int]
    budget: int
    pinned: list[CacheKey] = field(default_factory=list)
    loaded: list[CacheKey] = field(default_factory=list)

    def pin(self, key: CacheKey) -> None:
        self.pinned.append(key)

    async def load(self, key: CacheKey) -> None:
        assert key in self.pinned, "pinned before it loads: no eviction can come in between"
        self.loaded.append(key)

    @property
    def stats(self) -> SimpleNamespace:
        used = sum(self.sizes[k.model] for k in self.loaded)
        return SimpleNamespace(bytes_in_use=used, budget_bytes=self.budget)


class FakeRegistry:
    def resolve(self, name: str, ref: str | None) -> SimpleNamespace:
        return SimpleNamespace(model=name, version=2 if ref == "candidate" else 1)


def preload(cache: FakeCache, *names: str) -> None:
    settings = SimpleNamespace(preload=names, demo=False)
    app = SimpleNamespace(settings=settings, registry=FakeRegistry(), cache=cache)
    asyncio.run(_preload(app))  # type: ignore[arg-type]


def test_preloaded_versions_are_pinned(caplog: pytest.LogCaptureFixture) -> None:
    cache = FakeCache({"a": 10, "b": 20}, budget=100)
    with caplog.at_level(logging.WARNING):
        preload(cache, "a", "b@candidate", "a")
    assert cache.pinned == cache.loaded == [CacheKey("a", 1), CacheKey("b", 2)]
    assert "budget" not in caplog.text


def test_a_preload_set_over_the_budget_is_said(caplog: pytest.LogCaptureFixture) -> None:
    cache = FakeCache({"a": 60, "b": 50}, budget=100)
    with caplog.at_level(logging.WARNING):
        preload(cache, "a", "b")
    assert "the preloaded models take 110 bytes, more than the model cache's budget of 100" in (
        caplog.text
    )
