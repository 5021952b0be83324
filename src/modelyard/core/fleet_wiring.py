"""Plugs many models per box into a server :class:`~modelyard.app.App` (listed in
``app._features``): registry watch + hot swap, usage recording, cold-start timings, memory that
goes back to the OS, and ``GET /v2/fleet/cache``.

``app.extras`` gets ``"watcher"`` (the :class:`~modelyard.core.watch.RegistryWatcher`: other
features may ``subscribe`` to registry changes), ``"hotswap"`` and ``"usage"``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.core.hotswap import HotSwapper, WatchedResolver
from modelyard.core.model_cache import CacheEntryInfo, CacheKey, ModelCache
from modelyard.core.usage import UsageRecorder
from modelyard.core.watch import RegistryWatcher
from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.runtimes._common import rss_bytes

if TYPE_CHECKING:
    from modelyard.app import App

log = logging.getLogger("modelyard.fleet")

CACHE_PATH = "/v2/fleet/cache"
TRIM_PERIOD_S = 1.0


def install(app: App) -> None:
    """Watcher + hot swapper (replacing the serving resolver), usage observer, cold-start
    timings, the memory trimmer, and the cache route."""
    settings = app.settings
    watcher, swapper = install_hot_swap(app)
    usage = UsageRecorder(app.registry, clock=app.clock)
    app.observers.add(usage)
    fetch_seconds = _fetch_seconds(app.extras)
    cold = ColdStarts(fetch_seconds, usage)
    app.serving.cold_start = cold.timings

    async def usage_loop() -> None:
        await usage.run(settings.stats_interval_s)

    app.background += [watcher.run, usage_loop]
    if settings.memory_trim:
        app.background.append(lambda: trim_loop(app.cache))

    def final_flush() -> None:
        usage.flush()

    app.closers.append(final_flush)
    app.routes.append(Route("GET", CACHE_PATH, CacheRoute(app, cold, watcher, swapper).handle))
    app.extras.update(watcher=watcher, hotswap=swapper, usage=usage)


def _fetch_seconds(extras: Mapping[str, object]) -> Mapping[CacheKey, float]:
    """Seconds the loader spent in ``registry.fetch`` per version (filled by app.make_loader)."""
    found = extras.get("fetch_seconds")
    return found if isinstance(found, dict) else {}


class ColdStarts:
    """Per loaded version: fetch (registry.fetch), load (engine), warm-up, first request."""

    def __init__(self, fetch_seconds: Mapping[CacheKey, float], usage: UsageRecorder) -> None:
        self._fetch = fetch_seconds
        self._usage = usage

    def timings(self, entry: CacheEntryInfo) -> dict[str, float]:
        fetch = self._fetch.get(entry.key, 0.0)
        out = {
            "fetch_s": round(fetch, 6),
            "load_s": round(max(entry.load_seconds - fetch, 0.0), 6),
            "warmup_s": round(entry.warmup_seconds, 6),
        }
        first = self._usage.first_request_s(entry.key)
        if first is not None:
            out["first_request_s"] = round(first, 6)
        return out


class CacheRoute:
    """``GET /v2/fleet/cache``: the model cache (entries, counters), the local disk tier, the
    watcher and recent hot swaps of this process, as JSON."""

    def __init__(
        self, app: App, cold: ColdStarts, watcher: RegistryWatcher, swapper: HotSwapper
    ) -> None:
        self._app = app
        self._cold = cold
        self._watcher = watcher
        self._swapper = swapper

    async def handle(self, request: HttpRequest) -> HttpResponse:
        disk = await asyncio.to_thread(self._app.registry.disk_cache.usage)
        doc = {
            **cache_doc(self._app.cache, self._cold, self._app.clock.monotonic()),
            "rss_bytes": rss_bytes(),
            "pid": os.getpid(),  # with --workers N, each worker has a cache of its own
            "disk": {
                "root": disk.root,
                "budget_bytes": disk.budget_bytes,
                "bytes": disk.bytes,
                "entries": disk.entries,
                "evictions": disk.evictions,
            },
            "watch": {
                "running": self._watcher.running,
                "interval_s": self._app.settings.watch_interval_s,
                "seq": self._watcher.seq,
                "last_poll_at": self._watcher.last_poll_at,
                "swaps": [
                    {"model": s.model, "old": list(s.old), "new": s.new, "seconds": s.seconds}
                    for s in self._swapper.history[-10:]
                ],
            },
        }
        return HttpResponse.json(doc)


def cache_doc(cache: ModelCache, cold: ColdStarts, now: float) -> dict[str, Any]:
    """The model cache's counters and entries as a JSON-ready dict."""
    stats = cache.stats
    lookups = stats.hits + stats.misses
    entries = []
    for e in sorted(cache.entries(), key=lambda e: (e.key.model, e.key.version)):
        row: dict[str, Any] = {
            "model": e.key.model,
            "version": e.key.version,
            "state": str(e.state),
            "bytes": e.bytes,
            "in_flight": e.in_flight,
            "pinned": e.pinned,
            "loaded_at": e.loaded_at,
            "idle_s": round(max(now - e.last_used, 0.0), 3),
        }
        if e.state == "READY":
            row.update(cold.timings(e))
        if e.error is not None:
            row["error"] = e.error
        entries.append(row)
    return {
        "budget_bytes": stats.budget_bytes,
        "bytes_in_use": stats.bytes_in_use,
        "stats": {
            "hits": stats.hits,
            "misses": stats.misses,
            "hit_ratio": stats.hits / lookups if lookups else None,
            "loads": stats.loads,
            "load_failures": stats.load_failures,
            "load_seconds_total": stats.load_seconds_total,
            "evictions": stats.evictions,
            "idle_unloads": stats.idle_unloads,
            "unloads": stats.unloads,
        },
        "entries": entries,
    }


# ---- memory back to the OS ---------------------------------------------------------------------
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only: probe before use
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(mmap_threshold: int = 256 * 1024, trim_threshold: int = 4 * 1024**2) -> bool:
    """Make glibc hand big blocks (model weights, parse buffers) straight back to the OS.

    By default glibc raises its mmap threshold each time a big mmapped block is freed, so later
    big blocks come from the heap and stay in RSS after a model is unloaded: under churn RSS grows
    far past the model cache's budget. A fixed threshold keeps blocks >= ``mmap_threshold`` in
    their own mappings, returned on free. False where the allocator is not glibc.
    """
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and ok
    return ok


def trim_heap() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _unloads(cache: ModelCache) -> int:
    stats = cache.stats
    return stats.evictions + stats.idle_unloads + stats.unloads


async def trim_loop(cache: ModelCache, period_s: float = TRIM_PERIOD_S) -> None:
    """Background task: tune the allocator, then trim the heap after models were unloaded."""
    if not tune_allocator():
        log.info("not glibc: RSS may stay above the model cache's budget after unloads")
        return
    seen = _unloads(cache)
    while True:
        await asyncio.sleep(period_s)
        now = _unloads(cache)
        if now != seen:
            seen = now
            await asyncio.to_thread(trim_heap)


def install_hot_swap(app: App) -> tuple[RegistryWatcher, HotSwapper]:
    """The registry watcher and the hot swapper, the swapper's resolver put in the serving core:
    an alias move loads the new version first and switches only once it is warm (a version
    that fails to load leaves the old one serving). The caller runs ``watcher.run``."""
    settings = app.settings
    watcher = RegistryWatcher(
        app.registry,
        interval_s=settings.watch_interval_s,
        use_notify=settings.use_pg_notify,
        clock=app.clock,
    )
    resolver = WatchedResolver(
        app.registry,
        ttl_s=settings.resolve_ttl_s,
        clock=app.clock,
        live=lambda: watcher.running,
    )
    app.serving.resolver = resolver
    swapper = HotSwapper(
        app.registry,
        app.cache,
        resolver,
        preload=settings.preload,
        retry_after_s=max(settings.load_failure_ttl_s, settings.watch_interval_s),
        drain_timeout_s=settings.drain_timeout_s,
        clock=app.clock,
    )
    watcher.subscribe(swapper.refresh)
    return watcher, swapper
