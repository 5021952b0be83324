"""The model cache's vocabulary and its pure decisions: which loaded entries to evict, which
are idle.

The mechanism (locks, futures, executors) lives in :mod:`modelyard.core.model_cache`, which
re-exports the value types below. The decisions only look at a snapshot of the entries, so they
are tested with tables of cases (no event loop, no threads).

Two eviction policies (``POLICIES``):

* ``lru``: least recently used first.
* ``gdsf`` (Greedy-Dual-Size-Frequency, Cherkasova 1998): each entry carries a priority
  ``H = L + F x C / S`` set when it is loaded and on every hit (:func:`gdsf_priority`): ``F`` its
  request count, ``C`` what a reload costs (measured load + warm-up seconds), ``S`` its bytes.
  The lowest ``H`` goes first, and ``L`` (the "clock") becomes the highest ``H`` evicted so far
  (:func:`gdsf_clock_after`), so entries that stop being used age out: a fresh hit on another
  entry is priced from the newer, higher ``L``. Per byte of RAM it keeps the entries that save
  the most reload seconds, which is what bounds throughput when many models share one budget:
  one large, rarely used model no longer pushes out many small popular ones, as under LRU.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelyard.errors import InvalidInputError

K = TypeVar("K", bound=Hashable)

POLICIES: tuple[str, ...] = ("lru", "gdsf")
#: Reload costs below this count as this: a load measured as (nearly) free, e.g. under a fake
#: clock or one coarse clock tick, must still be worth something per byte.
GDSF_COST_FLOOR_S = 1e-4


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
    ``priority`` is the entry's GDSF ``H`` (ignored by LRU).
    """

    key: K
    bytes: int
    last_used: float
    in_flight: int = 0
    pinned: bool = False
    priority: float = 0.0

    @property
    def evictable(self) -> bool:
        """Entries serving a request or pinned by an operator are never unloaded by a policy."""
        return self.in_flight == 0 and not self.pinned


def check_policy(policy: str) -> str:
    """``policy`` when it is one of ``POLICIES``; InvalidInputError naming the field if not."""
    if policy not in POLICIES:
        raise InvalidInputError(
            f"cache policy must be one of {', '.join(POLICIES)}, got {policy!r}"
        )
    return policy


def gdsf_priority(clock: float, frequency: float, cost_s: float, size: int) -> float:
    """GDSF's ``H = L + F x C / S``: ``clock`` is ``L``, ``frequency`` the entry's request count
    (at least 1: a loaded entry was wanted once), ``cost_s`` its reload seconds (at least
    ``GDSF_COST_FLOOR_S``), ``size`` its bytes (at least 1)."""
    return clock + max(frequency, 1.0) * max(cost_s, GDSF_COST_FLOOR_S) / max(size, 1)


def gdsf_clock_after(
    clock: float, entries: Sequence[EvictionCandidate[K]], victims: Sequence[K]
) -> float:
    """GDSF's ``L`` after ``victims`` were evicted: the highest priority among them; never
    lower than ``clock`` (an entry priced before ``L`` last rose does not turn it back)."""
    chosen = set(victims)
    return max([clock, *(c.priority for c in entries if c.key in chosen)])


def choose_evictions(
    entries: Sequence[EvictionCandidate[K]],
    bytes_in_use: int,
    budget: int,
    incoming: int = 0,
    *,
    policy: str = "lru",
) -> list[K]:
    """Keys to evict, in the policy's order, so that ``bytes_in_use + incoming <= budget``.

    ``lru``: least recently used first. ``gdsf``: lowest ``priority`` first, least recently used
    among equal priorities. ``bytes_in_use`` counts every loaded byte (also entries that are not
    candidates, such as the one just loaded); ``incoming`` is the size of an entry about to be
    added. Full ties keep the order of ``entries`` (the caller passes them oldest first).

    When the budget cannot be met because the rest is in flight or pinned, every evictable entry
    is still chosen: memory is the scarce resource and getting closer to the budget is better
    than nothing. The cache then stays over budget until leases end (it never blocks a request).
    """
    check_policy(policy)
    excess = bytes_in_use + incoming - budget
    if excess <= 0:
        return []
    evictable = [c for c in entries if c.evictable]
    if policy == "gdsf":
        evictable.sort(key=lambda c: (c.priority, c.last_used))
    else:
        evictable.sort(key=lambda c: c.last_used)
    chosen: list[K] = []
    for cand in evictable:
        chosen.append(cand.key)
        excess -= cand.bytes
        if excess <= 0:
            break
    return chosen


def choose_idle(entries: Sequence[EvictionCandidate[K]], now: float, idle_ttl_s: float) -> list[K]:
    """Keys of evictable entries unused for at least ``idle_ttl_s`` seconds at ``now``."""
    return [c.key for c in entries if c.evictable and now - c.last_used >= idle_ttl_s]


@dataclass(slots=True)
class _Seen:
    requests: float = 0.0
    cost_s: float | None = None


class RequestHistory(Generic[K]):
    """GDSF's memory of every key, loaded or not: how often it was requested and the cheapest
    reload seen. Not thread-safe (the model cache calls it under its lock).

    Counts outlive evictions, so a popular model that was pushed out comes back with its
    popularity instead of starting at 1 (plain GDSF forgets it and evicts it again soon).
    Every ``window`` counted requests all counts are halved (TinyLFU's reset) and keys left
    below 1 are forgotten: popularity that moved on fades, and at most ``2 x window`` keys are
    remembered however many distinct keys are requested.

    The cost kept is the minimum over loads: a load measured while the process was busy
    (other loads, requests holding the GIL) took longer than the model needs, never shorter.
    """

    def __init__(self, window: int = 50_000) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InvalidInputError(f"frequency window must be an int >= 1, got {window!r}")
        self.window = window
        self._seen: dict[K, _Seen] = {}
        self._since_halving = 0

    def request(self, key: K) -> float:
        """Counts one request for ``key``; returns its (decayed) count."""
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = _Seen()
        seen.requests += 1.0
        count = seen.requests
        self._since_halving += 1
        if self._since_halving >= self.window:
            self._halve()
        return count

    def frequency(self, key: K) -> float:
        seen = self._seen.get(key)
        return 0.0 if seen is None else seen.requests

    def load_cost(self, key: K, measured_s: float) -> float:
        """Records one load of ``key`` that took ``measured_s``; returns the cheapest seen."""
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = _Seen()
        if seen.cost_s is None or measured_s < seen.cost_s:
            seen.cost_s = measured_s
        return seen.cost_s

    def __len__(self) -> int:
        return len(self._seen)

    def _halve(self) -> None:
        self._since_halving = 0
        for key in list(self._seen):
            seen = self._seen[key]
            seen.requests /= 2.0
            if seen.requests < 1.0:
                del self._seen[key]
