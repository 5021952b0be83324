"""The model cache's vocabulary and its pure decisions: which loaded entries to evict, which
are idle.

The mechanism (locks, futures, executors) lives in :mod:`modelyard.core.model_cache`, which
re-exports the value types below. The decisions only look at a snapshot of the entries, so they
are tested with tables of cases (no event loop, no threads).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelyard.errors import InvalidInputError

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One version of one model; ``str(key)`` is ``"model:version"``."""

    model: str
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidInputError(
                f"CacheKey.model must be a non-empty string, got {self.model!r}"
            )
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise InvalidInputError(f"CacheKey.version must be an int >= 0, got {self.version!r}")

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


class CacheState(enum.StrEnum):
    """Lifecycle of an entry: LOADING -> READY | FAILED; READY -> UNLOADING -> gone."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True, slots=True)
class CacheEntryInfo:
    """A snapshot of one entry. ``last_used`` is monotonic seconds, ``loaded_at`` wall seconds."""

    key: CacheKey
    state: CacheState
    bytes: int
    last_used: float
    in_flight: int
    pinned: bool
    load_seconds: float
    warmup_seconds: float
    loaded_at: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was built. ``misses`` counts requests that found no ready
    runtime (started or joined a load, or got a remembered failure). ``loads`` counts loader
    calls; ``load_seconds_total`` sums loader + warm-up time of successful loads."""

    hits: int
    misses: int
    loads: int
    load_failures: int
    load_seconds_total: float
    evictions: int
    idle_unloads: int
    unloads: int
    bytes_in_use: int
    budget_bytes: int


@dataclass(frozen=True, slots=True)
class EvictionCandidate(Generic[K]):
    """A snapshot of one loaded entry, as the policies see it.

    ``last_used`` is a monotonic timestamp (seconds). ``in_flight`` counts leases being served.
    """

    key: K
    bytes: int
    last_used: float
    in_flight: int = 0
    pinned: bool = False

    @property
    def evictable(self) -> bool:
        """Entries serving a request or pinned by an operator are never unloaded by a policy."""
        return self.in_flight == 0 and not self.pinned


def choose_evictions(
    entries: Sequence[EvictionCandidate[K]], bytes_in_use: int, budget: int, incoming: int = 0
) -> list[K]:
    """Keys to evict, least recently used first, so that ``bytes_in_use + incoming <= budget``.

    ``bytes_in_use`` counts every loaded byte (also entries that are not candidates, such as the
    one just loaded); ``incoming`` is the size of an entry about to be added. Ties on
    ``last_used`` keep the order of ``entries`` (the caller passes them oldest first).

    When the budget cannot be met because the rest is in flight or pinned, every evictable entry
    is still chosen: memory is the scarce resource and getting closer to the budget is better
    than nothing. The cache then stays over budget until leases end (it never blocks a request).
    """
    excess = bytes_in_use + incoming - budget
    if excess <= 0:
        return []
    chosen: list[K] = []
    for cand in sorted((c for c in entries if c.evictable), key=lambda c: c.last_used):
        chosen.append(cand.key)
        excess -= cand.bytes
        if excess <= 0:
            break
    return chosen


def choose_idle(entries: Sequence[EvictionCandidate[K]], now: float, idle_ttl_s: float) -> list[K]:
    """Keys of evictable entries unused for at least ``idle_ttl_s`` seconds at ``now``."""
    return [c.key for c in entries if c.evictable and now - c.last_used >= idle_ttl_s]
