"""Who still uses which model version: request counts and last request times, per version.

:class:`UsageRecorder` is an :class:`~modelyard.core.observer.Observer`: on the hot path it bumps
two numbers in memory; :meth:`UsageRecorder.flush` (a background loop, and once at shutdown) adds
them to the registry table ``model_usage`` (model, version, last_request_at, requests), so every
replica's traffic lands in one place. :func:`idle_versions` reads it back for
``modelyard idle --days N``: versions nobody called lately, candidates for retirement.

The recorder also remembers the latency of the first request each loaded version served (its
cold start as a client saw it), for the model metadata and ``GET /v2/fleet/cache``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.model_cache import CacheKey
from modelyard.core.observer import CacheEvent, InferEvent, Observer
from modelyard.errors import InvalidInputError, ModelYardError
from modelyard.registry.registry import Registry

log = logging.getLogger("modelyard.usage")

_UPSERT = (
    "INSERT INTO model_usage (model, version, last_request_at, requests) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (model, version) DO UPDATE SET "
    "requests = model_usage.requests + excluded.requests, "
    "last_request_at = CASE WHEN excluded.last_request_at > model_usage.last_request_at "
    "THEN excluded.last_request_at ELSE model_usage.last_request_at END"
)


class UsageRecorder(Observer):
    """Counts requests per (model, version) and flushes them to ``model_usage``."""

    def __init__(self, registry: Registry, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        # (model, version) -> [requests, last request wall time] since the last flush
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._first: dict[CacheKey, float] = {}
        # (model, version) of successful requests already checked against _first since the
        # last load: their later requests skip building a CacheKey. Emptied on every load.
        self._first_checked: set[tuple[str, str]] = set()
        self.flushed_rows = 0

    # ---- hot path ------------------------------------------------------------------------------
    def on_infer(self, event: InferEvent) -> None:
        if not event.version:
            return  # not resolved: no version was used
        key = (event.model, event.version)
        now = self._clock.wall()
        with self._lock:
            counts = self._pending.get(key)
            if counts is None:
                self._pending[key] = [1, now]
            else:
                counts[0] += 1
                counts[1] = now
        if event.code == "OK" and key not in self._first_checked:
            self._note_first(key, event.latency_s)

    def _note_first(self, key: tuple[str, str], latency_s: float) -> None:
        """A successful request of ``key``, the first since the last load of any version:
        its latency is the cold start when its version has none recorded yet."""
        model, version = key
        with self._lock:  # against on_cache, so that _first_checked never outlives a load
            if version.isdigit():
                first = CacheKey(model, int(version))
                if first not in self._first:
                    self._first[first] = latency_s
            self._first_checked.add(key)

    def on_cache(self, event: CacheEvent) -> None:
        if event.kind == "load" and event.version.isdigit():
            # A (re)loaded version: its next request is a cold start again.
            with self._lock:
                self._first.pop(CacheKey(event.model, int(event.version)), None)
                self._first_checked.clear()

    # ---- cold starts ---------------------------------------------------------------------------
    def first_request_s(self, key: CacheKey) -> float | None:
        """Latency of the first successful request of ``key`` since it was (last) loaded."""
        return self._first.get(key)

    # ---- flushing ------------------------------------------------------------------------------
    def pending(self) -> dict[tuple[str, str], tuple[int, float]]:
        with self._lock:
            return {k: (int(v[0]), v[1]) for k, v in self._pending.items()}

    def flush(self) -> int:
        """Add the counts gathered since the last flush to ``model_usage``; returns the rows
        written. On a registry error the counts are kept for the next flush."""
        with self._lock:
            batch, self._pending = self._pending, {}
        rows = [
            (model, int(version), last, int(count))
            for (model, version), (count, last) in sorted(batch.items())
            if version.isdigit()
        ]
        if not rows:
            return 0
        try:
            with self._registry.store.transaction() as tx:
                for row in rows:
                    tx.execute(_UPSERT, row)
        except ModelYardError as exc:
            log.warning("could not write model usage (%d rows kept for later): %s", len(rows), exc)
            self._restore(batch)
            return 0
        self.flushed_rows += len(rows)
        return len(rows)

    def _restore(self, batch: dict[tuple[str, str], list[float]]) -> None:
        with self._lock:
            for key, (count, last) in batch.items():
                counts = self._pending.setdefault(key, [0, last])
                counts[0] += count
                counts[1] = max(counts[1], last)

    async def run(self, interval_s: float) -> None:
        """Flush every ``interval_s`` until cancelled (the final flush is a closer)."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.flush)


# ---- reading it back ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VersionUsage:
    """One version and its recorded traffic (``last_request_at`` None: never called)."""

    model: str
    version: int
    created_at: float
    aliases: tuple[str, ...]
    last_request_at: float | None
    requests: int


def idle_versions(
    registry: Registry, *, days: float, now: float | None = None
) -> list[VersionUsage]:
    """Versions with no recorded request in the last ``days`` days (never-called ones too,
    when they are older than that), by model and version."""
    if isinstance(days, bool) or not isinstance(days, int | float) or not days >= 0:
        raise InvalidInputError(f"days must be a number >= 0, got {days!r}")
    cutoff = (registry.clock.wall() if now is None else now) - days * 86400.0
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT v.model, v.version, v.created_at, u.last_request_at, u.requests "
            "FROM versions v LEFT JOIN model_usage u "
            "ON u.model = v.model AND u.version = v.version "
            "WHERE (u.last_request_at IS NULL AND v.created_at < ?) OR u.last_request_at < ? "
            "ORDER BY v.model, v.version",
            (cutoff, cutoff),
        ).rows
        alias_rows = tx.execute("SELECT model, alias, version FROM aliases ORDER BY alias").rows
    aliases: dict[tuple[str, int], tuple[str, ...]] = {}
    for model, alias, version in alias_rows:
        key = (str(model), int(version))
        aliases[key] = (*aliases.get(key, ()), str(alias))
    return [
        VersionUsage(
            model=str(model),
            version=int(version),
            created_at=float(created),
            aliases=aliases.get((str(model), int(version)), ()),
            last_request_at=None if last is None else float(last),
            requests=0 if count is None else int(count),
        )
        for model, version, created, last, count in rows
    ]
