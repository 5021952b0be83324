"""Cascade policy: when a cheap model's answer is not confident enough, escalate.

Confidence of a row is the largest value of the cascade's output in that row (e.g. the top class
probability); a request escalates when any of its rows falls below the threshold, or is NaN.
"""

from __future__ import annotations

import numpy as np

from modelyard.traffic.spec import Cascade, ModelRef, Route
from modelyard.types import Array


def confidence(output: Array) -> Array:
    """Per-row confidence: the max over everything but the first (batch) dimension."""
    arr = np.asarray(output, dtype=np.float64)
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.size == 0:
        return np.zeros((arr.shape[0],), dtype=np.float64)
    rows: Array = arr.reshape(arr.shape[0], -1).max(axis=1)
    return rows


def needs_escalation(output: Array, threshold: float) -> bool:
    """True when some row's confidence is below ``threshold`` (NaN counts as below)."""
    conf = confidence(output)
    return not bool((conf >= threshold).all())


def applies_to(cascade: Cascade | None, route: Route) -> bool:
    """Whether requests on ``route`` go through the cascade: the route serves the cascade's
    ``first`` model (any version when ``first`` names none)."""
    if cascade is None:
        return False
    return _same_target(cascade.first, route)


def _same_target(first: ModelRef, route: Route) -> bool:
    if first.model != route.model:
        return False
    return first.version is None or str(first.version) == str(route.version)
