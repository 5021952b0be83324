"""The dashboard's live numbers: :class:`LiveSeries`, an in-memory ring of per-second buckets per
model fed by an observer, and the functions that add the counts of the other workers of
``serve --workers N`` (asked through :mod:`modelyard.monitoring.live_peers`) to this one's:
:func:`fleet_timeseries` for the charts, :func:`fleet_counts` for the observed route split.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.frontends.ui_counts import (
    EVERYTHING,
    RECENT_S,
    SeriesCounts,
    Span,
    Want,
    Window,
    WindowCounts,
    busiest,
    clamp_window,
    merge_counts,
    render,
    route_counts,
)
from modelyard.traffic.stats import CANCELLED, SHADOW_ROUTE, bucket_of

#: Seconds of history kept per series (the page shows at most this much).
HISTORY_S = 15 * 60
#: Distinct models (and endpoint routes) given a series; later names share ``OTHER``.
MAX_SERIES = 200
OTHER = "_other"
#: Seconds the observed route split covers.
SPLIT_S = 60
MAX_POINTS = 180

#: The first of the two questions of a timeseries poll: the total and requests per model.
SUMMARY = Want(model_requests=True)
ROUTES = Want(routes=True)
K = TypeVar("K")


class Peers(Protocol):
    """The other workers of this server (:class:`~modelyard.monitoring.live_peers.PeerClient`)."""

    async def ask(
        self, window: Window, want: Want, among: Collection[str] | None = None
    ) -> Mapping[str, WindowCounts | None]:
        """Each peer's counts (or of the peers named in ``among``), asked all at once; None for
        one that did not answer in time or answered nonsense. Never raises."""
        ...


class _Ring:
    """Per-second buckets of one series: requests, failures and a latency histogram."""

    __slots__ = ("errors", "latency", "requests", "stamps")

    def __init__(self, size: int) -> None:
        self.stamps = [-1] * size
        self.requests = [0] * size
        self.errors = [0] * size
        self.latency: list[dict[int, int] | None] = [None] * size

    def add(self, second: int, failed: bool, bucket: int) -> None:
        """Count one request of ``second``; ``bucket`` is its latency's histogram bucket."""
        i = second % len(self.stamps)
        if self.stamps[i] != second:  # the slot holds an older second: reuse it
            self.stamps[i] = second
            self.requests[i] = 0
            self.errors[i] = 0
            self.latency[i] = None
        self.requests[i] += 1
        if failed:
            self.errors[i] += 1
        hist = self.latency[i]
        if hist is None:
            hist = self.latency[i] = {}
        hist[bucket] = hist.get(bucket, 0) + 1

    def count(self, first: int, end: int) -> int:
        """Requests of the seconds ``first`` <= s < ``end``."""
        size = len(self.stamps)
        stamps, requests = self.stamps, self.requests
        return sum(requests[s % size] for s in range(first, end) if stamps[s % size] == s)

    def span(self, first: int, end: int) -> Span:
        """Requests, failures and latencies of the seconds ``first`` <= s < ``end``."""
        out = Span()
        size = len(self.stamps)
        for second in range(first, end):
            i = second % size
            if self.stamps[i] != second:
                continue
            out.requests += self.requests[i]
            out.errors += self.errors[i]
            found = self.latency[i]
            if found is not None:
                for bucket, n in dict(found).items():  # dict(): a consistent copy (one C call)
                    out.latency[bucket] = out.latency.get(bucket, 0) + n
        return out

    def counts(self, window: Window) -> SeriesCounts:
        """This series in ``window``: the non-empty points and seconds of the tail."""
        series = SeriesCounts()
        for k in range(window.points):
            first = window.first + k * window.step_s
            span = self.span(first, first + window.step_s)
            if span.requests:
                series.points[k] = span
        for second in range(window.end - RECENT_S, window.end):
            span = self.span(second, second + 1)
            if span.requests:
                series.tail[second] = span
        return series


class LiveSeries(Observer):
    """Per-model request rate, p99 latency and error rate over the last :data:`HISTORY_S`, in
    per-second buckets, plus request counts per (endpoint, route) for the observed split.

    ``on_infer`` costs a dict look-up and a few increments. Unresolved requests (unknown model
    names) create no series; calls cancelled by the caller (e.g. the losing copy of a hedged
    request) are not counted; any other non-OK code counts as an error. Reads copy what they
    need, so they may run in a worker thread while the event loop keeps writing.
    """

    def __init__(
        self,
        *,
        history_s: int = HISTORY_S,
        max_series: int = MAX_SERIES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.history_s = history_s
        self.max_series = max_series
        self.clock = clock
        # Seconds before this are unknown, not quiet: windows start here at the earliest.
        self.started = int(clock.monotonic())
        self._models: dict[str, _Ring] = {}
        self._total = _Ring(history_s)
        self._routes: dict[tuple[str, str], _Ring] = {}

    def on_infer(self, event: InferEvent) -> None:
        if not event.version or event.code == CANCELLED:
            return
        second = int(self.clock.monotonic())
        failed = event.code != "OK"
        bucket = bucket_of(event.latency_s)
        self._total.add(second, failed, bucket)
        ring = self._models.get(event.model)
        if ring is None:
            ring = self._ring(self._models, event.model, OTHER)
        ring.add(second, failed, bucket)
        if event.route and event.route != SHADOW_ROUTE and event.endpoint != event.model:
            key = (event.endpoint, event.route)
            route = self._routes.get(key)
            if route is None:
                route = self._ring(self._routes, key, (OTHER, OTHER))
            route.add(second, failed, bucket)

    def _ring(self, rings: dict[K, _Ring], key: K, other: K) -> _Ring:
        if len(rings) >= self.max_series:
            key = other
        ring = rings.get(key)
        if ring is None:
            ring = rings[key] = _Ring(self.history_s)
        return ring

    def window(self, minutes: int, step_s: int | None = None, *, clamp: bool = True) -> Window:
        """The last ``minutes`` of complete steps (the current, partial second is left out),
        or fewer when this process is younger than that (``clamp=False``: all of them, for
        workers of different ages; :func:`merge_counts` clamps to the oldest)."""
        seconds = min(minutes * 60, self.history_s)
        step = step_s or max(1, math.ceil(seconds / MAX_POINTS))
        end = int(self.clock.monotonic()) // step * step
        points = max(1, seconds // step)
        window = Window(end - step * points, step, points)
        return clamp_window(window, self.started) if clamp else window

    def split_window(self) -> Window:
        """The last :data:`SPLIT_S` seconds and the current one, as one point."""
        end = int(self.clock.monotonic()) + 1
        return Window(end - SPLIT_S - 1, SPLIT_S + 1, 1)

    def counts(self, window: Window, want: Want = EVERYTHING) -> WindowCounts:
        """The raw counts of ``window``: the total series and the parts in ``want``."""
        counts = WindowCounts(window, self.started, self._total.counts(window))
        first = min(window.first, window.end - RECENT_S)
        if want.model_requests:
            for name, ring in list(self._models.items()):
                requests = ring.count(window.first, window.end)
                if requests:
                    counts.model_requests[name] = requests
        names = list(self._models) if want.models is None else want.models
        for name in names:
            found = self._models.get(name)
            if found is not None and found.count(first, window.end):
                counts.models[name] = found.counts(window)
        if want.routes:
            for key, ring in list(self._routes.items()):
                if ring.count(first, window.end):
                    counts.routes[key] = ring.counts(window)
        return counts

    def snapshot(self, window: Window, limit: int) -> dict[str, Any]:
        """The JSON the page draws from this process alone: a total series and one per model
        (the ``limit`` busiest; only those get their latency histograms read)."""
        counts = self.counts(window, SUMMARY)
        top = busiest(counts.model_requests, limit)
        counts.models = self.counts(window, Want(models=top)).models
        offset = self.clock.wall() - self.clock.monotonic()
        doc = render(counts, limit, now=self.clock.wall(), offset=offset)
        return {"pid": os.getpid(), **doc}

    def route_counts(self) -> dict[str, dict[str, int]]:
        """Requests per route of each endpoint over the last :data:`SPLIT_S` seconds."""
        return route_counts(self.counts(self.split_window(), ROUTES))


@dataclass(frozen=True)
class FleetCounts:
    """Counts of this worker and of the peers that answered: ``answered`` of ``asked``
    workers (both include this one)."""

    counts: WindowCounts
    answered: int
    asked: int

    def workers(self) -> dict[str, int]:
        return {"answered": self.answered, "asked": self.asked}


async def _ask_all(
    live: LiveSeries,
    window: Window,
    want: Want,
    peers: Peers | None,
    among: Collection[str] | None = None,
) -> tuple[WindowCounts, Mapping[str, WindowCounts | None]]:
    """This worker's counts and the peers' answers, computed and asked at the same time."""
    if peers is None:
        return await asyncio.to_thread(live.counts, window, want), {}
    asking = peers.ask(window, want, among)
    mine, answers = await asyncio.gather(asyncio.to_thread(live.counts, window, want), asking)
    return mine, answers


async def fleet_counts(
    live: LiveSeries, window: Window, want: Want, peers: Peers | None
) -> FleetCounts:
    """This worker's counts of ``window`` plus those of every peer that answers, clamped to
    the oldest answering worker's start."""
    mine, answers = await _ask_all(live, window, want, peers)
    parts = [mine, *(a for a in answers.values() if a is not None)]
    merged = await asyncio.to_thread(merge_counts, window, parts)
    return FleetCounts(merged, len(parts), 1 + len(answers))


async def fleet_timeseries(
    live: LiveSeries, window: Window, limit: int, peers: Peers | None
) -> FleetCounts:
    """The counts a timeseries answer draws, in two questions to every worker, as a single
    process does it: first the total series and requests per model; then, for the ``limit``
    models busiest on the sums, their series (histograms are only read for those). A peer
    that does not answer both is left out of everything."""
    mine, answers = await _ask_all(live, window, SUMMARY, peers)
    summaries = {peer: counts for peer, counts in answers.items() if counts is not None}
    summed = await asyncio.to_thread(merge_counts, window, [mine, *summaries.values()])
    top = busiest(summed.model_requests, limit)
    if not top:
        return FleetCounts(summed, 1 + len(summaries), 1 + len(answers))
    again = peers if summaries else None  # only those that answered the first question
    own, series = await _ask_all(live, window, Want(models=top), again, list(summaries))
    found = {p: c for p, c in series.items() if c is not None and p in summaries}
    if len(found) < len(summaries):  # one answered the first question only: leave it out
        parts = [mine, *(summaries[peer] for peer in found)]
        summed = await asyncio.to_thread(merge_counts, window, parts)
    summed.models = (await asyncio.to_thread(merge_counts, window, [own, *found.values()])).models
    return FleetCounts(summed, 1 + len(found), 1 + len(answers))


def render_fleet(fleet: FleetCounts, limit: int, clock: Clock) -> dict[str, Any]:
    """The timeseries document of ``fleet``, naming this worker (``pid``) and the workers it
    covers."""
    offset = clock.wall() - clock.monotonic()
    doc = render(fleet.counts, limit, now=clock.wall(), offset=offset)
    return {"pid": os.getpid(), "workers": fleet.workers(), **doc}
