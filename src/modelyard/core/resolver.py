"""Name -> version resolution with a short TTL, so the hot path does not query SQL per request."""

from __future__ import annotations

import asyncio
import threading

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.registry.registry import ModelVersion, Registry


class Resolver:
    """Caches ``registry.resolve(name, ref)`` for ``ttl_s`` seconds of the injected clock.

    Errors are not cached: an unknown name costs one registry query per request, but a model
    pushed a moment later becomes visible at once.
    """

    def __init__(self, registry: Registry, *, ttl_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._registry = registry
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, str | None], tuple[float, ModelVersion]] = {}
        self._lock = threading.Lock()
        # A subclass whose entries are also switched from outside bumps this (under the lock):
        # a registry read that started before must not overwrite what was decided after it.
        self._generation = 0

    def _fresh(self, expires: float) -> bool:
        """Whether an entry that expires at ``expires`` (monotonic) may still be served."""
        return expires > self._clock.monotonic()

    def cached(self, name: str, ref: str | None) -> ModelVersion | None:
        hit = self._entries.get((name, ref))
        if hit is not None and self._fresh(hit[0]):
            return hit[1]
        return None

    def resolve_sync(self, name: str, ref: str | None) -> ModelVersion:
        hit = self.cached(name, ref)
        if hit is not None:
            return hit
        generation = self._generation
        mv = self._registry.resolve(name, ref)
        with self._lock:
            if generation == self._generation:
                self._entries[(name, ref)] = (self._clock.monotonic() + self._ttl, mv)
        return mv

    async def resolve(self, name: str, ref: str | None) -> ModelVersion:
        hit = self.cached(name, ref)
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.resolve_sync, name, ref)

    def invalidate(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._entries.clear()
            else:
                for key in [k for k in self._entries if k[0] == name]:
                    del self._entries[key]
