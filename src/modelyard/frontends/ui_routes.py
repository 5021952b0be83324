"""The dashboard's HTTP side: the static page under ``/ui`` and the JSON API it polls.

* ``GET /ui`` (and ``/ui/``): ``index.html``; ``GET /ui/{asset}``: ``app.js``, ``style.css``,
  ``favicon.svg`` from the package directory ``frontends/ui`` (plain files, no build step).
  ``index.html`` names each asset with ``?v=<content hash>``: such requests are cached for a
  year, everything else is revalidated (ETag, 304). A Content-Security-Policy allows nothing
  but this server, so the page provably works offline.
* ``GET /ui/api/overview``: registry, endpoints, rollouts, model cache and drift, as assembled
  by the callable the wiring passes in (:mod:`modelyard.monitoring.ui_wiring`).
* ``GET /ui/api/timeseries?minutes=5&step=2&limit=12``: per-model RPS, p99 and error rate from
  :class:`LiveSeries`, an in-memory ring buffer of per-second buckets fed by an observer.

With ``--workers N`` every worker keeps its own :class:`LiveSeries` and the page shows the
worker its poll reached (the response names it by ``pid``); fleet-wide numbers come from
Prometheus (``/metrics``, ``deploy/grafana``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.errors import InvalidInputError
from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.traffic.stats import CANCELLED, SHADOW_ROUTE, Histogram, bucket_of

UI_PATH = "/ui"
OVERVIEW_PATH = "/ui/api/overview"
TIMESERIES_PATH = "/ui/api/timeseries"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
IMMUTABLE = "public, max-age=31536000, immutable"
#: Seconds of history kept per series (the page shows at most this much).
HISTORY_S = 15 * 60
#: Distinct models (and endpoint routes) given a series; later names share ``OTHER``.
MAX_SERIES = 200
OTHER = "_other"
#: Seconds the "now" figures (``recent``) and the observed route split cover.
RECENT_S = 10
SPLIT_S = 60
MAX_POINTS = 180

Overview = Callable[[], Awaitable[dict[str, Any]]]
K = TypeVar("K")


# ---- live series ---------------------------------------------------------------------------------
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

    def span(self, first: int, end: int) -> tuple[int, int, Histogram]:
        """Requests, failures and latencies of the seconds ``first`` <= s < ``end``."""
        requests = errors = 0
        counts: dict[int, int] = {}
        size = len(self.stamps)
        for second in range(first, end):
            i = second % size
            if self.stamps[i] != second:
                continue
            requests += self.requests[i]
            errors += self.errors[i]
            found = self.latency[i]
            if found is not None:
                for bucket, n in dict(found).items():  # dict(): a consistent copy (one C call)
                    counts[bucket] = counts.get(bucket, 0) + n
        return requests, errors, Histogram(counts)


@dataclass(frozen=True)
class Window:
    """Which seconds a timeseries answer covers: ``points`` steps of ``step_s`` from ``first``."""

    first: int
    step_s: int
    points: int

    @property
    def end(self) -> int:
        return self.first + self.step_s * self.points


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

    def window(self, minutes: int, step_s: int | None = None) -> Window:
        """The last ``minutes`` of complete steps (the current, partial second is left out),
        or fewer when this process is younger than that."""
        seconds = min(minutes * 60, self.history_s)
        step = step_s or max(1, math.ceil(seconds / MAX_POINTS))
        end = int(self.clock.monotonic()) // step * step
        lived = end - self.started // step * step
        points = max(1, min(seconds, lived) // step)
        return Window(end - step * points, step, points)

    def snapshot(self, window: Window, limit: int) -> dict[str, Any]:
        """The JSON the page draws: a total series and one per model (the ``limit`` busiest)."""
        busy = []
        for name, ring in list(self._models.items()):
            requests = ring.count(window.first, window.end)
            if requests:
                busy.append((-requests, name, ring))
        busy.sort(key=lambda item: (item[0], item[1]))
        models = [{"model": name, **_series(ring, window)} for _, name, ring in busy[:limit]]
        offset = self.clock.wall() - self.clock.monotonic()
        return {
            "now": self.clock.wall(),
            "pid": os.getpid(),
            "step_s": window.step_s,
            "t0": window.first + offset,
            "points": window.points,
            "window_s": window.points * window.step_s,
            "total": _series(self._total, window),
            "models": models,
            "models_with_traffic": len(busy),
        }

    def route_counts(self) -> dict[str, dict[str, int]]:
        """Requests per route of each endpoint over the last :data:`SPLIT_S` seconds."""
        end = int(self.clock.monotonic())
        out: dict[str, dict[str, int]] = {}
        for (endpoint, route), ring in list(self._routes.items()):
            requests = ring.count(end - SPLIT_S, end + 1)
            if requests:
                out.setdefault(endpoint, {})[route] = requests
        return out


def _series(ring: _Ring, window: Window) -> dict[str, Any]:
    rps: list[float] = []
    p99: list[float | None] = []
    error_rate: list[float | None] = []
    total_requests = total_errors = 0
    for k in range(window.points):
        first = window.first + k * window.step_s
        requests, errors, hist = ring.span(first, first + window.step_s)
        total_requests += requests
        total_errors += errors
        rps.append(round(requests / window.step_s, 3))
        p99.append(hist.quantile(0.99))
        error_rate.append(round(errors / requests, 6) if requests else None)
    recent_s = min(RECENT_S, window.step_s * window.points)  # a young process has less
    requests, errors, hist = ring.span(window.end - recent_s, window.end)
    return {
        "requests": total_requests,
        "errors": total_errors,
        "recent": {
            "rps": round(requests / recent_s, 3),
            "p99_s": hist.quantile(0.99),
            "error_rate": round(errors / requests, 6) if requests else None,
        },
        "rps": rps,
        "p99_s": p99,
        "error_rate": error_rate,
    }


# ---- static assets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The files of ``frontends/ui``; ``index.html`` gets each asset's ``?v=`` content hash."""
    root = resources.files("modelyard.frontends").joinpath("ui")
    assets: dict[str, Asset] = {}
    for entry in root.iterdir():
        content_type = CONTENT_TYPES.get(os.path.splitext(entry.name)[1])
        if content_type is not None and entry.is_file():
            assets[entry.name] = _asset(entry.read_bytes(), content_type)
    index = assets["index.html"].body
    for name, asset in assets.items():
        index = index.replace(f'"/ui/{name}"'.encode(), f'"/ui/{name}?v={asset.etag}"'.encode())
    assets["index.html"] = _asset(index, CONTENT_TYPES[".html"])
    return assets


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])


def asset_response(asset: Asset, request: HttpRequest) -> HttpResponse:
    """The asset, or 304 when the client's copy is current."""
    versioned = _query(request).get("v") == asset.etag
    headers = [
        ("etag", f'"{asset.etag}"'),
        ("cache-control", IMMUTABLE if versioned else "no-cache"),
        ("x-content-type-options", "nosniff"),
    ]
    if asset.content_type.startswith("text/html"):
        headers += [("content-security-policy", CSP), ("referrer-policy", "no-referrer")]
    if request.headers.get("if-none-match", "").strip() == f'"{asset.etag}"':
        return HttpResponse(304, b"", None, headers)
    return HttpResponse(200, asset.body, asset.content_type, headers)


# ---- routes --------------------------------------------------------------------------------------
def ui_routes(overview: Overview, live: LiveSeries) -> list[Route]:
    """The dashboard's routes: the page, its assets and its JSON API."""
    assets = load_assets()

    async def index(request: HttpRequest) -> HttpResponse:
        return asset_response(assets["index.html"], request)

    async def asset(request: HttpRequest) -> HttpResponse:
        found = assets.get(request.params["asset"])
        if found is None:
            return HttpResponse.json({"error": f"no dashboard file {request.path}"}, status=404)
        return asset_response(found, request)

    async def overview_api(request: HttpRequest) -> HttpResponse:
        return _no_store(HttpResponse.json(await overview()))

    async def timeseries_api(request: HttpRequest) -> HttpResponse:
        query = _query(request)
        max_minutes = live.history_s // 60
        minutes = _int_param(query, "minutes", 5, 1, max_minutes)
        step = _int_param(query, "step", 0, 0, 60) or None
        limit = _int_param(query, "limit", 12, 1, 100)
        window = live.window(minutes, step)
        doc = await asyncio.to_thread(live.snapshot, window, limit)
        return _no_store(HttpResponse.json({"minutes": minutes, **doc}))

    return [
        Route("GET", UI_PATH, index),
        Route("GET", UI_PATH + "/{asset}", asset),
        Route("GET", OVERVIEW_PATH, overview_api),
        Route("GET", TIMESERIES_PATH, timeseries_api),
    ]


def _no_store(response: HttpResponse) -> HttpResponse:
    response.headers.append(("cache-control", "no-store"))
    return response


def _query(request: HttpRequest) -> dict[str, str]:
    parsed = parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit()) or not low <= int(digits) <= high:
        raise InvalidInputError(
            f"query parameter '{name}' must be an integer from {low} to {high}, got {raw!r}"
        )
    return int(raw)
