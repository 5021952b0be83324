"""Hot swap: when an alias a server serves moves (``production``: v3 -> v4), load v4, warm it,
switch the name atomically, drain v3's in-flight requests, unload v3. No request fails and every
response comes from exactly one version (its ``model_version`` says which).

Two pieces, driven by the registry watcher (:mod:`modelyard.core.watch`):

* :class:`WatchedResolver` replaces the serving dataplane's TTL resolver. While the watcher runs,
  its entries do not expire: they change only when the swapper switches them, after the new
  version is warm, so requests never race ahead to a cold version (and a registry outage does not
  stop serving names already resolved). Without a running watcher it is the plain TTL resolver.
* :class:`HotSwapper` is the watcher's listener: on each registry change it re-resolves every
  name the resolver holds (plus the preloaded ones) with one registry read, and swaps those whose
  version moved. Versions that were not loaded switch without loading (they load on first use).

The decision (which names moved, to which version) is the pure :func:`plan_refresh`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.core.resolver import Resolver
from modelyard.errors import ModelYardError
from modelyard.registry.names import PRODUCTION
from modelyard.registry.registry import ModelInfo, ModelVersion, Registry

log = logging.getLogger("modelyard.hotswap")

RefKey = tuple[str, str | None]
"""What a request names: (model, ref) with ref a version number, an alias, or None."""


# ---- the pure decision -------------------------------------------------------------------------
def target_version(info: ModelInfo | None, ref: str | None) -> int | None:
    """The version ``ref`` names now (as :meth:`Registry.resolve` would), None if nothing."""
    if info is None:
        return None
    if ref is None:
        return info.aliases.get(PRODUCTION, info.latest_version)
    if ref.isdigit():
        return int(ref)
    return info.aliases.get(ref)


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """``swaps``: (model, new version) -> the names to switch to it; ``gone``: names that no
    longer resolve (forgotten, so the next request gets the registry's answer)."""

    swaps: dict[tuple[str, int], list[RefKey]] = field(default_factory=dict)
    gone: list[RefKey] = field(default_factory=list)


def plan_refresh(
    current: Mapping[RefKey, int | None], infos: Mapping[str, ModelInfo]
) -> RefreshPlan:
    """Compare what each tracked name serves (``current``; None = not resolved yet) with the
    registry's models and aliases now."""
    plan = RefreshPlan()
    for key, version in current.items():
        name, ref = key
        target = target_version(infos.get(name), ref)
        if target is None:
            if version is not None:
                plan.gone.append(key)
        elif target != version:
            plan.swaps.setdefault((name, target), []).append(key)
    return plan


def aliases_of(info: ModelInfo, version: int) -> tuple[str, ...]:
    """The aliases pointing at ``version``, sorted (as the registry reports them)."""
    return tuple(a for a, v in sorted(info.aliases.items()) if v == version)


# ---- the resolver ------------------------------------------------------------------------------
class WatchedResolver(Resolver):
    """A :class:`Resolver` whose entries stay valid while ``live()`` (the watcher runs) and are
    switched by the :class:`HotSwapper`; with ``live()`` False, entries expire after ``ttl_s``."""

    def __init__(
        self,
        registry: Registry,
        *,
        ttl_s: float,
        clock: Clock = SYSTEM_CLOCK,
        live: Callable[[], bool],
    ) -> None:
        super().__init__(registry, ttl_s=ttl_s, clock=clock)
        self._live = live
        # The generation is bumped by every switch, refresh and invalidation: a registry read
        # that started before must not overwrite what the swapper decided after it.

    def _fresh(self, expires: float) -> bool:
        return self._live() or super()._fresh(expires)

    def invalidate(self, name: str | None = None) -> None:
        with self._lock:
            self._generation += 1
        super().invalidate(name)

    def begin_refresh(self) -> dict[RefKey, ModelVersion]:
        """A snapshot of every entry; resolutions in flight will not be stored."""
        with self._lock:
            self._generation += 1
            return {key: mv for key, (_, mv) in self._entries.items()}

    def switch(self, updates: Mapping[RefKey, ModelVersion]) -> None:
        """Point every name in ``updates`` at its new version, all under one lock."""
        expires = self._clock.monotonic() + self._ttl
        with self._lock:
            self._generation += 1
            for key, mv in updates.items():
                self._entries[key] = (expires, mv)

    def forget(self, keys: Iterable[RefKey]) -> None:
        with self._lock:
            self._generation += 1
            for key in keys:
                self._entries.pop(key, None)

    def serves(self, key: CacheKey) -> bool:
        """True when some name still resolves to version ``key``."""
        with self._lock:
            return any(
                mv.model == key.model and mv.version == key.version
                for _, mv in self._entries.values()
            )


# ---- the swapper -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Swap:
    """One completed switch of ``names`` from ``old`` versions to ``new`` (``old`` empty: the
    names had not been resolved yet, e.g. preloaded models on the first refresh)."""

    model: str
    new: int
    old: tuple[int, ...]
    names: tuple[RefKey, ...]
    warmed: bool
    seconds: float


def parse_preload(items: Sequence[str]) -> list[RefKey]:
    """``name`` or ``name@alias`` (the ``preload`` setting) as resolver keys."""
    out: list[RefKey] = []
    for item in items:
        name, _, ref = item.partition("@")
        out.append((name, ref or None))
    return out


class HotSwapper:
    """The watcher's listener: keeps :class:`WatchedResolver` entries current, loading and
    warming a new version before a loaded old one is switched away from and unloaded.

    A new version that fails to load is not switched to: the server keeps serving the old one,
    logs an error and retries after ``retry_after_s``.
    """

    def __init__(
        self,
        registry: Registry,
        cache: ModelCache,
        resolver: WatchedResolver,
        *,
        preload: Sequence[str] = (),
        retry_after_s: float = 10.0,
        drain_timeout_s: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._registry = registry
        self._cache = cache
        self._resolver = resolver
        self._preload = parse_preload(preload)
        self._retry_after = retry_after_s
        self._drain_timeout = drain_timeout_s
        self._clock = clock
        self._failed: dict[CacheKey, float] = {}
        #: Every completed swap, oldest first (bounded).
        self.history: list[Swap] = []

    async def refresh(self, seq: int = 0) -> list[Swap]:
        """Re-resolve every tracked name against the registry; swap the ones that moved."""
        tracked: dict[RefKey, ModelVersion | None] = dict(self._resolver.begin_refresh())
        for key in self._preload:
            tracked.setdefault(key, None)
        if not tracked:
            return []
        infos = {i.name: i for i in await asyncio.to_thread(self._registry.list_models)}
        current = {key: None if mv is None else mv.version for key, mv in tracked.items()}
        plan = plan_refresh(current, infos)
        self._resolver.forget(plan.gone)
        self._relabel(tracked, infos)
        done: list[Swap] = []
        for (name, version), keys in plan.swaps.items():
            swap = await self._swap(name, version, keys, tracked)
            if swap is not None:
                done.append(swap)
        self.history = [*self.history, *(s for s in done if s.old)][-100:]
        return done

    def _relabel(
        self, tracked: Mapping[RefKey, ModelVersion | None], infos: Mapping[str, ModelInfo]
    ) -> None:
        """Entries whose version stays but whose aliases changed get the new alias list."""
        updates: dict[RefKey, ModelVersion] = {}
        for key, mv in tracked.items():
            info = infos.get(key[0])
            if mv is None or info is None:
                continue
            aliases = aliases_of(info, mv.version)
            if aliases != mv.aliases and target_version(info, key[1]) == mv.version:
                updates[key] = dataclasses.replace(mv, aliases=aliases)
        if updates:
            self._resolver.switch(updates)

    async def _swap(
        self,
        name: str,
        version: int,
        keys: list[RefKey],
        tracked: Mapping[RefKey, ModelVersion | None],
    ) -> Swap | None:
        new_key = CacheKey(name, version)
        failed_at = self._failed.get(new_key)
        if failed_at is not None and self._clock.monotonic() < failed_at + self._retry_after:
            return None
        olds = {CacheKey(name, mv.version) for k in keys if (mv := tracked[k]) is not None}
        warm = any(self._cache.is_loaded(k) for k in olds) or any(k in self._preload for k in keys)
        started = self._clock.monotonic()
        try:
            mv = await asyncio.to_thread(self._registry.get_version, name, version)
            if warm:
                await self._cache.load(new_key)  # loads and warms it (single flight)
        except ModelYardError as exc:
            self._failed[new_key] = self._clock.monotonic()
            old_text = ", ".join(str(k.version) for k in sorted(olds, key=str)) or "-"
            log.error(
                "hot swap of %s to version %d failed; still serving version %s: %s",
                name,
                version,
                old_text,
                exc.message,
            )
            return None
        self._failed.pop(new_key, None)
        pinned = {e.key for e in self._cache.entries() if e.pinned}
        if olds & pinned:
            self._cache.pin(new_key)
        self._resolver.switch({key: mv for key in keys})
        await self._retire(olds - {new_key}, pinned)
        swap = Swap(
            model=name,
            new=version,
            old=tuple(sorted(k.version for k in olds)),
            names=tuple(keys),
            warmed=warm,
            seconds=self._clock.monotonic() - started,
        )
        log.log(
            logging.INFO if swap.old else logging.DEBUG,  # a first resolution is no swap
            "hot swap %s: %s -> %d (%s in %.3f s)",
            name,
            list(swap.old) or "-",
            version,
            "loaded and warmed" if warm else "not loaded",
            swap.seconds,
        )
        return swap

    async def _retire(self, olds: set[CacheKey], pinned: set[CacheKey]) -> None:
        """Unload old versions no name resolves to any more, once their requests finish."""
        for old in sorted(olds, key=str):
            if self._resolver.serves(old):
                continue
            if old in pinned:
                self._cache.unpin(old)
            if not self._cache.is_loaded(old):
                continue
            try:
                await asyncio.wait_for(self._cache.unload(old), timeout=self._drain_timeout)
            except TimeoutError:
                # Its requests still run; the cache unloads it when the last one ends.
                log.warning(
                    "hot swap: %s still has requests after %.0f s; unloading later",
                    old,
                    self._drain_timeout,
                )
