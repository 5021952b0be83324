"""Per-interval serving stats: what each replica writes to the registry for the controller.

Every replica counts, per (endpoint, route, model, version) and per interval of
``settings.stats_interval_s`` aligned to wall time: requests, errors by code, a latency histogram,
fallbacks by reason, and shadow comparisons. Intervals are aligned and the histogram has fixed
logarithmic buckets, so rows of many replicas merge exactly (sum the counts). A background task
(:mod:`modelyard.traffic.stats_store`) writes finished intervals to table ``serving_stats``, one
row per replica x interval x key.

The JSON of one row::

    {"interval_s": 10.0, "requests": 120, "errors": {"INTERNAL": 2},
     "latency": {"61": 80, "62": 38},          # bucket index -> count (successful requests)
     "latency_sum_s": 0.61, "fallbacks": {"error": 2}, "cancelled": 0,
     "shadow": {"compared": 118, "agreed": 106, "primary_failed": 0, "dropped": 3,
                "latency_delta_sum_s": 0.05, "latency_delta_n": 118}}
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import CANCELLED as CANCELLED
from modelyard.core.observer import SHADOW_ROUTE as SHADOW_ROUTE
from modelyard.core.observer import InferEvent, Observer
from modelyard.errors import InvalidInputError
from modelyard.settings import Settings

# SHADOW_ROUTE (route label of shadow calls) and CANCELLED (the code of a call cancelled before
# it finished) are the core's (core/observer.py), re-exported above for traffic and dashboard.
#: Route label of endpoint-level counts that belong to no route (fallbacks without one).
ENDPOINT_ROUTE = "*"

BUCKETS_PER_DOUBLING = 8
MIN_LATENCY_S = 1e-6
MAX_BUCKET = 8 * 32  # 1 us * 2**32 ~ 71 minutes


def replica_name(settings: Settings) -> str:
    """This process's name in stats rows: ``settings.replica_id``, else ``host-pid``."""
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


# ---- histogram -----------------------------------------------------------------------------------
def bucket_of(latency_s: float) -> int:
    """Bucket ``i`` holds latencies in (MIN * 2**((i-1)/8), MIN * 2**(i/8)]; bucket 0 <= MIN."""
    if not latency_s > MIN_LATENCY_S:  # also catches NaN
        return 0
    index = math.ceil(math.log2(latency_s / MIN_LATENCY_S) * BUCKETS_PER_DOUBLING)
    return index if index < MAX_BUCKET else MAX_BUCKET


def bucket_upper(index: int) -> float:
    """The upper edge of bucket ``index`` (what quantiles report: a <= 9 % overestimate)."""
    return float(MIN_LATENCY_S * 2.0 ** (index / BUCKETS_PER_DOUBLING))


@dataclass
class Histogram:
    """Latency counts in fixed log buckets (sparse): merging two is adding their counts."""

    counts: dict[int, int] = field(default_factory=dict)

    def add(self, latency_s: float, n: int = 1) -> None:
        i = bucket_of(latency_s)
        self.counts[i] = self.counts.get(i, 0) + n

    def merge(self, other: Histogram) -> None:
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bucket holding the ``q``-quantile; None when empty."""
        total = self.total
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return bucket_upper(i)
        return bucket_upper(max(self.counts))

    def to_json(self) -> dict[str, int]:
        return {str(i): n for i, n in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, data: Any) -> Histogram:
        if not isinstance(data, dict):
            raise InvalidInputError("serving stats: 'latency' must be an object")
        try:
            return cls({int(k): int(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"serving stats: 'latency' has a bad bucket: {exc}") from exc


# ---- one row's stats -----------------------------------------------------------------------------
@dataclass
class ShadowStats:
    """Shadow comparison counts. ``compared``/``agreed`` count rows (the first dim of the
    compared output); ``primary_failed`` counts shadows whose primary had no answer."""

    compared: int = 0
    agreed: int = 0
    primary_failed: int = 0
    dropped: int = 0
    latency_delta_sum_s: float = 0.0
    latency_delta_n: int = 0

    def merge(self, other: ShadowStats) -> None:
        self.compared += other.compared
        self.agreed += other.agreed
        self.primary_failed += other.primary_failed
        self.dropped += other.dropped
        self.latency_delta_sum_s += other.latency_delta_sum_s
        self.latency_delta_n += other.latency_delta_n

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_latency_delta_s(self) -> float | None:
        return self.latency_delta_sum_s / self.latency_delta_n if self.latency_delta_n else None

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "agreed": self.agreed,
            "primary_failed": self.primary_failed,
            "dropped": self.dropped,
            "latency_delta_sum_s": self.latency_delta_sum_s,
            "latency_delta_n": self.latency_delta_n,
        }

    @classmethod
    def from_json(cls, data: Any) -> ShadowStats:
        if not isinstance(data, dict):
            raise InvalidInputError("serving stats: 'shadow' must be an object")
        try:
            return cls(
                compared=int(data.get("compared", 0)),
                agreed=int(data.get("agreed", 0)),
                primary_failed=int(data.get("primary_failed", 0)),
                dropped=int(data.get("dropped", 0)),
                latency_delta_sum_s=float(data.get("latency_delta_sum_s", 0.0)),
                latency_delta_n=int(data.get("latency_delta_n", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"serving stats: bad 'shadow' counts: {exc}") from exc


@dataclass
class RouteStats:
    """What one (endpoint, route, model, version) did in one interval (or a merged window)."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    latency_sum_s: float = 0.0
    fallbacks: dict[str, int] = field(default_factory=dict)
    shadow: ShadowStats | None = None
    #: Calls cancelled before they finished (e.g. the losing copy of a hedged request): extra
    #: load, but no outcome, so they are not ``requests``.
    cancelled: int = 0

    def record(self, code: str, latency_s: float) -> None:
        if code == CANCELLED:
            self.cancelled += 1
            return
        self.requests += 1
        if code == "OK":
            counts = self.latency.counts  # Histogram.add, inlined: once per request
            bucket = bucket_of(latency_s)
            counts[bucket] = counts.get(bucket, 0) + 1
            self.latency_sum_s += latency_s
        else:
            self.errors[code] = self.errors.get(code, 0) + 1

    def shadow_stats(self) -> ShadowStats:
        if self.shadow is None:
            self.shadow = ShadowStats()
        return self.shadow

    def merge(self, other: RouteStats) -> None:
        self.requests += other.requests
        self.cancelled += other.cancelled
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.latency.merge(other.latency)
        self.latency_sum_s += other.latency_sum_s
        for reason, n in other.fallbacks.items():
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + n
        if other.shadow is not None:
            self.shadow_stats().merge(other.shadow)

    def failures(self) -> int:
        """Requests that got an error, whatever its code. A client's bad input fails on every
        version alike, so it moves no comparison between versions; a version that rejects what
        another accepts (a changed signature, a model class it cannot import: INVALID_ARGUMENT,
        FAILED_PRECONDITION) is failing, not the client."""
        return sum(self.errors.values())

    def to_json(self, interval_s: float) -> dict[str, Any]:
        data: dict[str, Any] = {
            "interval_s": interval_s,
            "requests": self.requests,
            "errors": dict(sorted(self.errors.items())),
            "latency": self.latency.to_json(),
            "latency_sum_s": self.latency_sum_s,
            "fallbacks": dict(sorted(self.fallbacks.items())),
            "cancelled": self.cancelled,
        }
        if self.shadow is not None:
            data["shadow"] = self.shadow.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any) -> RouteStats:
        """Parse a stored row; InvalidInputError naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise InvalidInputError("serving stats must be a JSON object")
        try:
            errors = {str(k): int(v) for k, v in dict(data.get("errors", {})).items()}
            fallbacks = {str(k): int(v) for k, v in dict(data.get("fallbacks", {})).items()}
            requests = int(data.get("requests", 0))
            cancelled = int(data.get("cancelled", 0))
            latency_sum = float(data.get("latency_sum_s", 0.0))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"serving stats: bad counts: {exc}") from exc
        shadow = data.get("shadow")
        return cls(
            requests=requests,
            errors=errors,
            latency=Histogram.from_json(data.get("latency", {})),
            latency_sum_s=latency_sum,
            fallbacks=fallbacks,
            shadow=None if shadow is None else ShadowStats.from_json(shadow),
            cancelled=cancelled,
        )


StatsKey = tuple[str, str, str, int]  # endpoint, route, model, version (0 = unknown)


@dataclass(frozen=True)
class StatsRow:
    replica: str
    interval_start: float
    endpoint: str
    route: str
    model: str
    version: int
    stats: RouteStats


def version_number(version: str | int | None) -> int:
    """A served version as stored (0 when unknown, e.g. resolution failed)."""
    if isinstance(version, int):
        return version
    return int(version) if version and version.isdigit() else 0


# ---- collector -------------------------------------------------------------------------------
class StatsCollector(Observer):
    """Counts every finished request (an Observer) and shadow outcome, per wall-aligned interval.

    Called on the hot path: each call is a dict update under a lock. ``take`` hands finished
    intervals to the writer; ``restore`` gives them back when a write failed.
    """

    def __init__(
        self,
        *,
        interval_s: float,
        replica: str,
        clock: Clock = SYSTEM_CLOCK,
        max_pending_intervals: int = 64,
    ) -> None:
        if interval_s <= 0:
            raise InvalidInputError(f"stats_interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.replica = replica
        self._clock = clock
        self._max_pending = max_pending_intervals
        self._lock = threading.Lock()
        self._intervals: dict[float, dict[StatsKey, RouteStats]] = {}
        # The interval the hot path last counted in: its index (wall // interval_s) and start.
        self._index: int | None = None
        self._start = 0.0
        #: Intervals dropped because the registry could not take them for too long.
        self.dropped_intervals = 0

    def interval_start(self, wall: float) -> float:
        return round(math.floor(wall / self.interval_s) * self.interval_s, 6)

    def _current_start(self) -> float:
        """``interval_start`` of the wall clock now. Callers hold self._lock.

        Same value as :meth:`interval_start`, but the start is only computed (rounded, which
        costs more than the rest of counting a request) when the interval index changes."""
        index = math.floor(self._clock.wall() / self.interval_s)
        if index != self._index:
            self._index = index
            self._start = round(index * self.interval_s, 6)
        return self._start

    def _stats(self, key: StatsKey) -> RouteStats:
        # Callers hold self._lock.
        start = self._current_start()
        bucket = self._intervals.get(start)
        if bucket is None:
            bucket = self._intervals[start] = {}
        stats = bucket.get(key)
        if stats is None:
            stats = bucket[key] = RouteStats()
        return stats

    # ---- inputs ------------------------------------------------------------------------------
    def on_infer(self, event: InferEvent) -> None:
        key = (event.endpoint, event.route, event.model, version_number(event.version))
        with self._lock:
            self._stats(key).record(event.code, event.latency_s)

    def on_fallback(self, endpoint: str, reason: str, route: str | None = None) -> None:
        """A request of ``endpoint`` was answered by its fallback chain, for ``reason``."""
        with self._lock:
            stats = self._stats((endpoint, route or ENDPOINT_ROUTE, "", 0))
            stats.fallbacks[reason] = stats.fallbacks.get(reason, 0) + 1

    def record_shadow(
        self,
        endpoint: str,
        model: str,
        version: int,
        *,
        compared: int,
        agreed: int,
        latency_delta_s: float | None,
    ) -> None:
        """One shadow compared with its primary (``compared`` = 0: the primary had no answer)."""
        with self._lock:
            shadow = self._stats((endpoint, SHADOW_ROUTE, model, version)).shadow_stats()
            if compared == 0:
                shadow.primary_failed += 1
            shadow.compared += compared
            shadow.agreed += agreed
            if latency_delta_s is not None:
                shadow.latency_delta_sum_s += latency_delta_s
                shadow.latency_delta_n += 1

    def record_shadow_drop(self, endpoint: str, model: str, version: int) -> None:
        """A shadow was not sent because too many were in flight."""
        with self._lock:
            self._stats((endpoint, SHADOW_ROUTE, model, version)).shadow_stats().dropped += 1

    # ---- output ------------------------------------------------------------------------------
    def take(self, *, everything: bool = False) -> list[StatsRow]:
        """Remove and return finished intervals (all of them, the current one too, with
        ``everything``, e.g. at shutdown)."""
        current = self.interval_start(self._clock.wall())
        with self._lock:
            due = [s for s in self._intervals if everything or s < current]
            taken = {s: self._intervals.pop(s) for s in sorted(due)}
        return [
            StatsRow(self.replica, start, *key, stats)
            for start, bucket in taken.items()
            for key, stats in bucket.items()
        ]

    def restore(self, rows: Iterable[StatsRow]) -> None:
        """Put rows back after a failed write (merged with anything counted since), keeping at
        most ``max_pending_intervals`` intervals: the oldest are dropped and counted."""
        with self._lock:
            for row in rows:
                bucket = self._intervals.setdefault(row.interval_start, {})
                key = (row.endpoint, row.route, row.model, row.version)
                known = bucket.get(key)
                if known is None:
                    bucket[key] = row.stats
                else:
                    known.merge(row.stats)
            while len(self._intervals) > self._max_pending:
                del self._intervals[min(self._intervals)]
                self.dropped_intervals += 1


def merge_rows(rows: Iterable[StatsRow]) -> RouteStats:
    """All ``rows`` summed into one RouteStats (e.g. a route across replicas and intervals)."""
    total = RouteStats()
    for row in rows:
        total.merge(row.stats)
    return total
