"""The dashboard's HTTP side: the static page under ``/ui`` and the JSON API it polls.

* ``GET /ui`` (and ``/ui/``): ``index.html``; ``GET /ui/{asset}``: ``app.js``, ``style.css``,
  ``favicon.svg`` from the package directory ``frontends/ui`` (plain files, no build step).
  ``index.html`` names each asset with ``?v=<content hash>``: such requests are cached for a
  year, everything else is revalidated (ETag, 304). A Content-Security-Policy allows nothing
  but this server, so the page provably works offline.
* ``GET /ui/api/overview``: registry, endpoints, rollouts, model cache and drift, as assembled
  by the callable the wiring passes in (:mod:`modelyard.monitoring.ui_wiring`).
* ``GET /ui/api/timeseries?minutes=5&step=2&limit=12``: per-model RPS, p99 and error rate from
  :class:`~modelyard.frontends.ui_series.LiveSeries`, an in-memory ring buffer of per-second
  buckets fed by an observer.

With ``--workers N`` every worker keeps its own :class:`LiveSeries`; the worker a poll reaches
asks the others for their raw counts of the same window (over private Unix sockets,
:mod:`modelyard.monitoring.live_peers`, 0.5 s at most per question): first the total series and
requests per model, then the series (with latency histograms) of the ``limit`` models busiest on
the sums. It adds them to its own and computes rates, p99 and error rates from the sums
(:mod:`modelyard.frontends.ui_counts`), so the charts cover every live worker whichever one
answers. The answer names that worker (``pid``) and how many
workers it covers (``workers``: ``answered`` of ``asked``; a dead or slow worker is left out).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from modelyard.errors import InvalidInputError
from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.frontends.ui_counts import RECENT_S, Window
from modelyard.frontends.ui_series import (
    HISTORY_S,
    MAX_POINTS,
    MAX_SERIES,
    OTHER,
    SPLIT_S,
    LiveSeries,
    Peers,
    fleet_timeseries,
    render_fleet,
)

__all__ = [
    "HISTORY_S",
    "MAX_POINTS",
    "MAX_SERIES",
    "OTHER",
    "RECENT_S",
    "SPLIT_S",
    "LiveSeries",
    "Window",
    "load_assets",
    "ui_routes",
]

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
Overview = Callable[[], Awaitable[dict[str, Any]]]


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
def ui_routes(overview: Overview, live: LiveSeries, peers: Peers | None = None) -> list[Route]:
    """The dashboard's routes: the page, its assets and its JSON API. ``peers`` asks the other
    workers of ``serve --workers N`` for their counts (None: this process is alone)."""
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
        # Not clamped to this worker's start: an older peer may have data for earlier seconds.
        fleet = await fleet_timeseries(live, live.window(minutes, step, clamp=False), limit, peers)
        doc = await asyncio.to_thread(render_fleet, fleet, limit, live.clock)
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
