"""The dashboard's numbers as raw counts, and how the counts of several workers become one answer.

A :class:`WindowCounts` is what one :class:`~modelyard.frontends.ui_series.LiveSeries` saw in a
:class:`Window`, in the parts a :class:`Want` asks for: the total series, requests per model (to
choose the busiest), the series of some models and those of the (endpoint, route) pairs. A series
holds per point the requests, the failures and the latency histogram's bucket counts, plus the
same per second for the last :data:`RECENT_S` seconds (the "now" figures). Counts add up exactly,
so the dashboard of ``serve --workers N`` adds the counts of every worker (:func:`merge_counts`)
and only then chooses the busiest models (:func:`busiest`) and computes rates, p99 (from the
summed histogram) and error rates (:func:`render`), exactly as for a single process. Everything
here is a plain function on data; the ``*_to_json`` / ``*_from_json`` pairs are the wire form the
workers exchange (:mod:`modelyard.monitoring.live_peers`), checked strictly since it comes from
another process. (Each process folds the names beyond its first ``MAX_SERIES`` into ``_other`` on
its own, so with that many models ``_other`` may stand for different models on different workers.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.traffic.stats import MAX_BUCKET, Histogram

#: Seconds the "now" figures (``recent``) cover.
RECENT_S = 10
#: Model series one request may ask for (the page shows at most 100 models).
MAX_NAMES = 100
MAX_NAME_CHARS = 128  # registry names (modelyard.registry.names)


@dataclass(frozen=True)
class Window:
    """Which seconds a timeseries answer covers: ``points`` steps of ``step_s`` from ``first``."""

    first: int
    step_s: int
    points: int

    @property
    def end(self) -> int:
        return self.first + self.step_s * self.points


def clamp_window(window: Window, started: int) -> Window:
    """``window`` without the whole steps before ``started`` (seconds before a process started
    are unknown, not quiet), keeping at least one point; the end stays where it is."""
    step = window.step_s
    lived = window.end - started // step * step
    points = max(1, min(window.points, lived // step))
    return Window(window.end - step * points, step, points)


@dataclass(frozen=True)
class Want:
    """Which parts of a window's counts are asked for; the total series always comes.

    ``models=None`` means every model (in process only: the wire form names them)."""

    model_requests: bool = False
    models: Collection[str] | None = ()
    routes: bool = False


#: Every part: what one process needs to answer alone, and the oracle of the tests.
EVERYTHING = Want(model_requests=True, models=None, routes=True)


@dataclass
class Span:
    """Requests, failures and latency histogram bucket counts of some seconds."""

    requests: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, other: Span) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for bucket, n in other.latency.items():
            self.latency[bucket] = self.latency.get(bucket, 0) + n


@dataclass
class SeriesCounts:
    """One series in a window: a :class:`Span` per point index and per second of the tail (the
    last :data:`RECENT_S` seconds before the window's end). Empty ones are left out."""

    points: dict[int, Span] = field(default_factory=dict)
    tail: dict[int, Span] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(span.requests for span in self.points.values())

    def add(self, other: SeriesCounts, shift: int = 0) -> None:
        """Add ``other``'s counts, its point ``k`` to this one's ``k - shift`` (dropped if < 0)."""
        for k, span in other.points.items():
            if k >= shift:
                self.points.setdefault(k - shift, Span()).add(span)
        for second, span in other.tail.items():
            self.tail.setdefault(second, Span()).add(span)


@dataclass
class WindowCounts:
    """What one process (or, merged, several) counted in ``window``; ``started`` is the oldest
    start among them. ``model_requests`` holds the requests of each model in the window; models
    and routes without requests in the window or its tail are left out."""

    window: Window
    started: int
    total: SeriesCounts = field(default_factory=SeriesCounts)
    model_requests: dict[str, int] = field(default_factory=dict)
    models: dict[str, SeriesCounts] = field(default_factory=dict)
    routes: dict[tuple[str, str], SeriesCounts] = field(default_factory=dict)


def merge_counts(window: Window, parts: Sequence[WindowCounts]) -> WindowCounts:
    """The sum of ``parts`` (each counted in ``window``), over ``window`` clamped to the oldest
    part's start: a younger process has no data for the older seconds, which count as zero."""
    if not parts:
        raise ValueError("merge_counts needs at least one part")
    started = min(part.started for part in parts)
    merged = WindowCounts(clamp_window(window, started), started)
    shift = window.points - merged.window.points
    for part in parts:
        if part.window != window:
            raise ValueError(f"counts of {part.window} cannot be merged into {window}")
        merged.total.add(part.total, shift)
        for name, n in part.model_requests.items():
            merged.model_requests[name] = merged.model_requests.get(name, 0) + n
        for name, series in part.models.items():
            merged.models.setdefault(name, SeriesCounts()).add(series, shift)
        for key, series in part.routes.items():
            merged.routes.setdefault(key, SeriesCounts()).add(series, shift)
    return merged


# ---- the JSON the page draws ---------------------------------------------------------------------
def busiest(model_requests: dict[str, int], limit: int) -> list[str]:
    """The ``limit`` models with the most requests (ties by name); none without requests."""
    busy = sorted((-n, name) for name, n in model_requests.items() if n > 0)
    return [name for _, name in busy[:limit]]


def render(counts: WindowCounts, limit: int, *, now: float, offset: float) -> dict[str, Any]:
    """The timeseries document: a total series and one per model (the ``limit`` busiest, of
    those whose series ``counts`` holds). ``now`` is the wall time, ``offset`` turns monotonic
    seconds into wall time."""
    window = counts.window
    chosen = [name for name in busiest(counts.model_requests, limit) if name in counts.models]
    return {
        "now": now,
        "step_s": window.step_s,
        "t0": window.first + offset,
        "points": window.points,
        "window_s": window.points * window.step_s,
        "total": _series(counts.total, window),
        "models": [{"model": name, **_series(counts.models[name], window)} for name in chosen],
        "models_with_traffic": sum(1 for n in counts.model_requests.values() if n > 0),
    }


def _series(series: SeriesCounts, window: Window) -> dict[str, Any]:
    rps: list[float] = []
    p99: list[float | None] = []
    error_rate: list[float | None] = []
    total_requests = total_errors = 0
    for k in range(window.points):
        span = series.points.get(k) or Span()
        total_requests += span.requests
        total_errors += span.errors
        rps.append(round(span.requests / window.step_s, 3))
        p99.append(Histogram(dict(span.latency)).quantile(0.99))
        error_rate.append(_rate(span))
    recent_s = min(RECENT_S, window.step_s * window.points)  # a young process has less
    recent = Span()
    for second, span in series.tail.items():
        if window.end - recent_s <= second < window.end:
            recent.add(span)
    return {
        "requests": total_requests,
        "errors": total_errors,
        "recent": {
            "rps": round(recent.requests / recent_s, 3),
            "p99_s": Histogram(recent.latency).quantile(0.99),
            "error_rate": _rate(recent),
        },
        "rps": rps,
        "p99_s": p99,
        "error_rate": error_rate,
    }


def _rate(span: Span) -> float | None:
    return round(span.errors / span.requests, 6) if span.requests else None


def route_counts(counts: WindowCounts) -> dict[str, dict[str, int]]:
    """Requests per route of each endpoint in the whole window (routes with traffic only)."""
    out: dict[str, dict[str, int]] = {}
    for (endpoint, route), series in sorted(counts.routes.items()):
        if series.requests:
            out.setdefault(endpoint, {})[route] = series.requests
    return out


# ---- wire form -----------------------------------------------------------------------------------
def window_to_json(window: Window) -> dict[str, int]:
    return {"first": window.first, "step_s": window.step_s, "points": window.points}


def window_from_json(data: Any, *, max_seconds: int) -> Window:
    """A window asked for by a peer: at least one point, at most ``max_seconds`` in all."""
    if not isinstance(data, dict) or set(data) != {"first", "step_s", "points"}:
        raise ValueError("a window is an object with first, step_s and points")
    step = _int(data["step_s"], 1, max_seconds)
    points = _int(data["points"], 1, max_seconds // step)
    return Window(_int(data["first"], -(2**62), 2**62), step, points)


def request_to_json(window: Window, want: Want) -> dict[str, Any]:
    if want.models is None:
        raise ValueError("a request names the models it wants")
    return {
        "window": window_to_json(window),
        "model_requests": want.model_requests,
        "models": sorted(want.models),
        "routes": want.routes,
    }


def request_from_json(data: Any, *, max_seconds: int) -> tuple[Window, Want]:
    """A peer's request: a window and the parts wanted (at most :data:`MAX_NAMES` models)."""
    if not isinstance(data, dict) or set(data) != {"window", "model_requests", "models", "routes"}:
        raise ValueError("a request is an object with window, model_requests, models and routes")
    window = window_from_json(data["window"], max_seconds=max_seconds)
    names = data["models"]
    if not isinstance(names, list) or len(names) > MAX_NAMES:
        raise ValueError(f"models must be a list of at most {MAX_NAMES} names")
    models = frozenset(_str(name, MAX_NAME_CHARS) for name in names)
    return window, Want(_bool(data["model_requests"]), models, _bool(data["routes"]))


def counts_to_json(counts: WindowCounts) -> dict[str, Any]:
    return {
        "window": window_to_json(counts.window),
        "started": counts.started,
        "total": _series_to_json(counts.total),
        "model_requests": [[name, n] for name, n in counts.model_requests.items()],
        "models": [[name, _series_to_json(s)] for name, s in counts.models.items()],
        "routes": [[*key, _series_to_json(s)] for key, s in counts.routes.items()],
    }


def counts_from_json(data: Any, window: Window) -> WindowCounts:
    """A peer's answer for ``window``; ValueError for anything else."""
    if not isinstance(data, dict):
        raise ValueError("counts must be an object")
    if data.get("window") != window_to_json(window):
        raise ValueError(f"counts are not for {window}")
    counts = WindowCounts(window, _int(data.get("started"), -(2**62), 2**62))
    counts.total = _series_from_json(data.get("total"), window)
    for name, n in _items(data.get("model_requests"), 2):
        counts.model_requests[_str(name)] = _int(n, 0, 2**62)
    for name, series in _items(data.get("models"), 2):
        counts.models[_str(name)] = _series_from_json(series, window)
    for endpoint, route, series in _items(data.get("routes"), 3):
        counts.routes[_str(endpoint), _str(route)] = _series_from_json(series, window)
    return counts


def _series_to_json(series: SeriesCounts) -> dict[str, Any]:
    def spans(items: Iterable[tuple[int, Span]]) -> list[list[Any]]:
        return [
            [k, s.requests, s.errors, [[b, n] for b, n in sorted(s.latency.items())]]
            for k, s in items
        ]

    return {"points": spans(series.points.items()), "tail": spans(series.tail.items())}


def _series_from_json(data: Any, window: Window) -> SeriesCounts:
    if not isinstance(data, dict):
        raise ValueError("a series must be an object")
    series = SeriesCounts()
    tail_first = window.end - RECENT_S
    for k, span in _spans(data.get("points")):
        series.points[_int(k, 0, window.points - 1)] = span
    for second, span in _spans(data.get("tail")):
        series.tail[_int(second, tail_first, window.end - 1)] = span
    return series


def _spans(data: Any) -> Iterable[tuple[Any, Span]]:
    for key, requests, errors, latency in _items(data, 4):
        span = Span(_int(requests, 0, 2**62), _int(errors, 0, 2**62))
        for bucket, n in _items(latency, 2):
            span.latency[_int(bucket, 0, MAX_BUCKET)] = _int(n, 0, 2**62)
        yield key, span


def _items(data: Any, width: int) -> list[list[Any]]:
    if not isinstance(data, list) or not all(
        isinstance(item, list) and len(item) == width for item in data
    ):
        raise ValueError(f"expected a list of {width}-item lists")
    return data


def _int(value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"expected an integer from {low} to {high}, got {value!r}")
    return value


def _str(value: Any, max_chars: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"expected at most {max_chars} characters, got {len(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value
