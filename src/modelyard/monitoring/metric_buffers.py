"""Request-path metric updates counted in plain Python and handed to prometheus-client in bulk.

prometheus-client's ``Histogram.observe`` checks its state, takes a lock per value and walks the
buckets in Python (with ``--workers N`` each value is also an mmap write); per request and per
batch that adds up on a busy server. So the request path only counts here (a bisect and three
additions), and :meth:`flush` adds the totals to the real metrics: before every scrape and once
a second, so a scrape is never more than that behind.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any


class BufferedCounter:
    """Counts for one counter child until :meth:`flush`."""

    __slots__ = ("_child", "_count")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._count = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._count += amount

    def flush(self) -> None:
        if self._count:
            self._child.inc(self._count)
            self._count = 0.0


class BufferedHistogram:
    """Bucket counts and sum for one histogram child until :meth:`flush`.

    Flushing adds per-bucket totals to the child's own values: the same numbers as one
    ``observe`` per value, for one addition per bucket. A prometheus-client without those
    internals gets each value observed directly instead."""

    __slots__ = ("_bounds", "_buckets", "_child", "_count", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        bounds: Sequence[float] | None = getattr(child, "_upper_bounds", None)
        bulk = bounds is not None and hasattr(child, "_sum") and hasattr(child, "_buckets")
        self._bounds = tuple(bounds) if bulk and bounds is not None else None
        self._buckets = [0] * len(self._bounds or ())
        self._count = 0
        self._sum = 0.0

    def observe(self, value: float) -> None:
        if self._bounds is None:
            self._child.observe(value)
            return
        self._count += 1
        self._sum += value
        self._buckets[bisect_left(self._bounds, value)] += 1

    def flush(self) -> None:
        if not self._count:
            return
        child = self._child
        child._sum.inc(self._sum)
        for i, n in enumerate(self._buckets):
            if n:
                child._buckets[i].inc(n)
                self._buckets[i] = 0
        self._count = 0
        self._sum = 0.0
