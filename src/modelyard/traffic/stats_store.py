"""Serving stats in the registry (table ``serving_stats``) and the task that writes them.

One row per replica x interval x (endpoint, route, model, version); a row written again (a
retried write) replaces the earlier one. The controller reads every replica's rows of a window
and merges them with :func:`~modelyard.traffic.stats.merge_rows`.
"""

from __future__ import annotations

import asyncio
import json
import logging

from modelyard.core.clock import Clock
from modelyard.registry.registry import Registry
from modelyard.traffic.stats import RouteStats, StatsCollector, StatsRow

log = logging.getLogger("modelyard.stats")

_UPSERT = (
    "INSERT INTO serving_stats (replica, interval_start, endpoint, route, model, version, stats) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (replica, interval_start, endpoint, route, model, version) "
    "DO UPDATE SET stats = excluded.stats"
)


def write_rows(registry: Registry, rows: list[StatsRow], interval_s: float) -> None:
    """Store rows in one transaction (a row written again replaces the earlier one)."""
    if not rows:
        return
    with registry.store.transaction(write=True) as tx:
        for r in rows:
            stats = json.dumps(r.stats.to_json(interval_s), separators=(",", ":"))
            params = (r.replica, r.interval_start, r.endpoint, r.route, r.model, r.version, stats)
            tx.execute(_UPSERT, params)


def read_rows(
    registry: Registry, endpoint: str, since: float, until: float | None = None
) -> list[StatsRow]:
    """Rows of ``endpoint`` (every replica) for intervals starting after ``since`` (and not
    after ``until``, if given), oldest first."""
    bounds = "interval_start > ?" if until is None else "interval_start > ? AND interval_start <= ?"
    params = (endpoint, since) if until is None else (endpoint, since, until)
    with registry.store.transaction(write=False) as tx:
        found = tx.execute(
            "SELECT replica, interval_start, endpoint, route, model, version, stats "
            f"FROM serving_stats WHERE endpoint = ? AND {bounds} ORDER BY interval_start",
            params,
        ).rows
    return [
        StatsRow(
            str(rep),
            float(start),
            str(ep),
            str(route),
            str(model),
            int(version),
            RouteStats.from_json(json.loads(stats)),
        )
        for rep, start, ep, route, model, version, stats in found
    ]


def prune_rows(registry: Registry, before: float) -> int:
    """Delete rows of intervals that started before ``before``; returns how many."""
    with registry.store.transaction(write=True) as tx:
        return tx.execute("DELETE FROM serving_stats WHERE interval_start < ?", (before,)).rowcount


class StatsWriter:
    """Writes a collector's finished intervals to the registry, once per interval.

    :meth:`run` is the server's background task; :meth:`flush` is one write (also at shutdown,
    with ``everything=True``, so the last partial interval is not lost). A failed write keeps
    the rows for the next attempt.
    """

    def __init__(self, registry: Registry, collector: StatsCollector, *, clock: Clock) -> None:
        self.registry = registry
        self.collector = collector
        self._clock = clock

    def flush(self, *, everything: bool = False) -> int:
        rows = self.collector.take(everything=everything)
        try:
            write_rows(self.registry, rows, self.collector.interval_s)
        except Exception:
            self.collector.restore(rows)
            raise
        return len(rows)

    def seconds_to_next_flush(self) -> float:
        """Until just after the current interval ends (a small lag lets its last requests in)."""
        interval = self.collector.interval_s
        now = self._clock.wall()
        end = self.collector.interval_start(now) + interval
        return max(end - now, 0.0) + min(interval * 0.05, 0.25)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds_to_next_flush())
            try:
                await asyncio.to_thread(self.flush)
            except Exception as exc:
                log.warning("writing serving stats failed (kept for the next try): %s", exc)
