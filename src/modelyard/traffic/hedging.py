"""Request hedging policy: when to send a second copy, and how many copies are allowed.

Pure parts: :func:`hedge_delay` (a fixed delay, or the route's recent p95), :func:`percentile`,
and the :class:`HedgeBudget` token bucket - every request earns ``max_fraction`` of a token, a
hedge spends a whole one, and the bucket starts empty, so hedged requests never exceed
``max_fraction`` of all requests (a bounded burst of ``capacity`` may be saved up while the
route is healthy). :class:`LatencyWindow` and :class:`HedgeLimiter` hold the mutable state.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from modelyard.traffic.spec import Hedging

MIN_SAMPLES = 20
"""A route needs this many recent latencies before its p95 can be the hedge delay."""
WINDOW = 256
"""How many recent latencies a route remembers."""
_REFRESH_EVERY = 16


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by the nearest-rank method; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]


def hedge_delay(hedging: Hedging | None, recent_p95_s: float | None) -> float | None:
    """Seconds to wait before hedging; None = do not hedge (no policy, or no delay known yet)."""
    if hedging is None:
        return None
    if hedging.delay_ms is not None:
        return hedging.delay_ms / 1000.0
    if recent_p95_s is None or not math.isfinite(recent_p95_s):
        return None
    return recent_p95_s


@dataclass(frozen=True, slots=True)
class HedgeBudget:
    """Token bucket capping hedges at ``fraction`` of requests."""

    fraction: float
    capacity: float
    tokens: float = 0.0

    @classmethod
    def for_policy(cls, hedging: Hedging) -> HedgeBudget:
        return cls(fraction=hedging.max_fraction, capacity=max(1.0, 100 * hedging.max_fraction))

    def earn(self) -> HedgeBudget:
        """One more request arrived."""
        return replace(self, tokens=min(self.capacity, self.tokens + self.fraction))

    def spend(self) -> tuple[HedgeBudget, bool]:
        """Take a token for one hedge; (unchanged, False) when none is left."""
        if self.tokens >= 1.0 - 1e-9:
            return replace(self, tokens=self.tokens - 1.0), True
        return self, False


class HedgeLimiter:
    """The mutable holder of one endpoint's :class:`HedgeBudget` (thread-safe)."""

    def __init__(self, hedging: Hedging) -> None:
        self._budget = HedgeBudget.for_policy(hedging)
        self._lock = threading.Lock()
        self.hedged = 0
        self.requests = 0

    def on_request(self) -> None:
        with self._lock:
            self._budget = self._budget.earn()
            self.requests += 1

    def try_hedge(self) -> bool:
        with self._lock:
            self._budget, ok = self._budget.spend()
            if ok:
                self.hedged += 1
            return ok


class LatencyWindow:
    """The last :data:`WINDOW` latencies of a route, with a p95 refreshed every few samples
    (so the hot path does not sort on every request)."""

    def __init__(self, size: int = WINDOW) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._since_refresh = 0
        self._p95: float | None = None
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)
            self._since_refresh += 1
            if self._since_refresh >= _REFRESH_EVERY or (
                self._p95 is None and len(self._samples) >= MIN_SAMPLES
            ):
                self._since_refresh = 0
                self._p95 = (
                    percentile(self._samples, 0.95) if len(self._samples) >= MIN_SAMPLES else None
                )

    def p95(self) -> float | None:
        """The recent p95 in seconds; None until :data:`MIN_SAMPLES` latencies were seen."""
        return self._p95
