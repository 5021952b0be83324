"""The model cache's bookkeeping records, guarded by the lock of
:class:`~modelyard.core.model_cache.ModelCache`: one entry per key, and the counters behind
:class:`~modelyard.core.cache_policy.CacheStats`."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from modelyard.core.cache_policy import CacheKey, CacheState
from modelyard.runtime import Runtime


@dataclass(slots=True, eq=False)
class CacheEntry:
    """One key's bookkeeping: its state, load future, runtime, size, leases and prices."""

    key: CacheKey
    last_used: float
    state: CacheState = CacheState.LOADING
    future: concurrent.futures.Future[Runtime] = field(default_factory=lambda: running_future())
    runtime: Runtime | None = None
    bytes: int = 0
    in_flight: int = 0
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    cost_s: float = 0.0  # GDSF's C: the cheapest measured reload of this key
    priority: float = 0.0  # GDSF's H, refreshed on every hit
    loaded_at: float | None = None
    error: BaseException | None = None
    error_tb: TracebackType | None = None
    failed_at: float = 0.0
    unload_done: concurrent.futures.Future[None] | None = None


def running_future() -> concurrent.futures.Future[Any]:
    # A RUNNING future cannot be cancelled: a waiter whose task is cancelled (wrap_future
    # forwards cancellation) must not cancel the load that other callers wait on.
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()
    return fut


@dataclass(slots=True)
class Counters:
    """The mutable part of CacheStats, guarded by the cache's lock."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_failures: int = 0
    load_seconds_total: float = 0.0
    evictions: int = 0
    idle_unloads: int = 0
    unloads: int = 0


#: A runtime to unload, and the future that says when it is done (None: nobody waits).
Disposal = tuple[Runtime, "concurrent.futures.Future[None] | None"]
