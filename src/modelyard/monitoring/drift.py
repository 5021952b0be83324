"""Drift detection: reference statistics at push time, and the comparisons the controller runs.

A version may carry, in its metadata under ``drift_reference``, statistics of a training sample
made by :func:`reference_stats`: per feature, either fixed bins (edges at the sample's quantiles,
for numeric columns) or category frequencies (BYTES, BOOL, and integer columns with few distinct
values). Replicas count serving data into the *same* bins (:mod:`modelyard.monitoring.sketches`),
so comparing is cheap and exact: :func:`psi` and :func:`ks_binned` over two count vectors, and
:func:`compare` for a whole version, inputs and outputs (prediction drift) alike.

Everything here is a pure function of its arguments; registry I/O lives in
:mod:`modelyard.monitoring.drift_reports`.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInputError
from modelyard.types import Array

REFERENCE_KEY = "drift_reference"  # the version-metadata key holding reference statistics
FORMAT = 1
DEFAULT_BINS = 10
MAX_CATEGORIES = 20  # integer columns with at most this many distinct values are categorical
MAX_COLUMNS = 256  # wider tensors (images, embeddings) are not sketched per column
OTHER = "__other__"  # the bucket of categories the reference did not list
PSI_FLOOR = 1e-4  # proportions are floored here so an empty bin gives a large, finite PSI

STATUS_RANK = {"insufficient_data": 0, "ok": 1, "warn": 2, "alarm": 3}


@dataclass(frozen=True)
class Thresholds:
    """When a feature counts as drifted. ``psi_warn`` is half the alarm level."""

    psi_alarm: float = 0.2
    ks_alarm: float = 0.2
    min_rows: int = 200  # fewer rows in the window: "insufficient_data", never an alarm

    @property
    def psi_warn(self) -> float:
        return self.psi_alarm / 2


DEFAULT_THRESHOLDS = Thresholds()


# ---- columns and binning (shared by the reference and the serving-time sketches) -------------
def columns(name: str, array: Array) -> Iterator[tuple[str, int | None, Array]]:
    """The features of one tensor: ``(feature, column, values)``. A 1-D tensor is one feature
    named like the tensor; a 2-D (or wider, flattened) tensor has one feature per column,
    ``name[j]``. Tensors wider than :data:`MAX_COLUMNS` yield nothing."""
    if array.ndim == 1:
        yield name, None, array
        return
    flat = array.reshape(array.shape[0], -1) if array.ndim > 2 else array
    if flat.shape[1] > MAX_COLUMNS:
        return
    for j in range(flat.shape[1]):
        yield f"{name}[{j}]", j, flat[:, j]


def column_values(array: Array, column: int | None) -> Array | None:
    """The values of feature ``column`` of a served tensor (None when the shape does not fit)."""
    if column is None:
        return array if array.ndim == 1 else None
    if array.ndim < 2:
        return None
    flat = array.reshape(array.shape[0], -1) if array.ndim > 2 else array
    return flat[:, column] if column < flat.shape[1] else None


def is_categorical(values: Array, max_categories: int = MAX_CATEGORIES) -> bool:
    kind = values.dtype.kind
    if kind in "OSUb":
        return True
    return kind in "iu" and len(np.unique(values)) <= max_categories


def bin_numeric(values: Array, edges: Array) -> tuple[Array, int]:
    """Counts of ``values`` in the bins ``(-inf, e0], (e0, e1], …, (e_last, inf)`` and the
    number of NaNs (counted apart, as "missing")."""
    values = np.asarray(values)
    missing = 0
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        missing = int(nan.sum())
        if missing:
            values = values[~nan]
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=len(edges) + 1), missing


def category_key(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def count_categories(values: Array) -> Counter[str]:
    """Frequencies of each value, keyed by :func:`category_key`; None values are skipped."""
    try:
        unique, counts = np.unique(values, return_counts=True)
        pairs: Iterable[tuple[Any, int]] = zip(unique.tolist(), counts.tolist(), strict=True)
    except TypeError:  # object arrays mixing types cannot be sorted
        pairs = Counter(values.tolist()).items()
    found: Counter[str] = Counter()
    for value, count in pairs:
        if value is not None:
            found[category_key(value)] += int(count)
    return found


# ---- reference statistics --------------------------------------------------------------------
def reference_stats(
    sample_inputs: Mapping[str, Any],
    sample_outputs: Mapping[str, Any] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    max_categories: int = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Reference statistics of a training sample, to store in version metadata under
    ``drift_reference`` (``registry.push(..., metadata={"drift_reference": stats})`` or
    ``registry.update_metadata(name, version, {"drift_reference": stats})``).

    ``sample_inputs`` / ``sample_outputs`` map tensor names to arrays whose first dimension is
    the row. Numeric columns get ``bins`` quantile bins, categorical ones their
    ``max_categories`` most frequent values (the rest share one ``__other__`` bucket).
    """
    if not 2 <= bins <= 100:
        raise InvalidInputError(f"bins must be between 2 and 100, got {bins}")
    if max_categories < 1:
        raise InvalidInputError(f"max_categories must be >= 1, got {max_categories}")
    return {
        "format": FORMAT,
        "inputs": _section("sample_inputs", sample_inputs, bins, max_categories),
        "outputs": _section("sample_outputs", sample_outputs or {}, bins, max_categories),
    }


def _section(
    what: str, sample: Mapping[str, Any], bins: int, max_categories: int
) -> dict[str, dict[str, Any]]:
    if not isinstance(sample, Mapping):
        raise InvalidInputError(f"{what} must map tensor names to arrays")
    features: dict[str, dict[str, Any]] = {}
    for name, raw in sample.items():
        array = np.asarray(raw)
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInputError(f"{what}[{name!r}] needs at least one row (a batch dimension)")
        for feature, column, values in columns(name, array):
            stats = _feature_stats(values, bins, max_categories)
            if stats is not None:
                features[feature] = {"tensor": name, "column": column, **stats}
    return features


def _feature_stats(values: Array, bins: int, max_categories: int) -> dict[str, Any] | None:
    if is_categorical(values, max_categories):
        found = count_categories(values)
        if not found:
            return None
        top = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
        listed = [key for key, _ in top]
        other = sum(found.values()) - sum(count for _, count in top)
        return {
            "kind": "categorical",
            "categories": listed,
            "counts": [count for _, count in top] + [other],
            "missing": int(len(values) - sum(found.values())),
        }
    if values.dtype.kind not in "iuf":
        return None
    numbers = values.astype(np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return None
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts, missing = bin_numeric(numbers, edges)
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "missing": missing,
    }


def reference_id(reference: Mapping[str, Any]) -> str:
    """A short fingerprint of a reference: sketches made with other bins are not comparable."""
    canonical = orjson.dumps(reference, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


def check_reference(reference: object) -> dict[str, Any]:
    """``reference`` when it is a reference this version of ModelYard understands."""
    if not isinstance(reference, Mapping) or reference.get("format") != FORMAT:
        raise InvalidInputError(
            f"metadata '{REFERENCE_KEY}' is not drift reference statistics (format {FORMAT})"
        )
    for section in ("inputs", "outputs"):
        if not isinstance(reference.get(section), Mapping):
            raise InvalidInputError(f"metadata '{REFERENCE_KEY}.{section}' must be an object")
    return dict(reference)


# ---- statistics on binned data ---------------------------------------------------------------
def _proportions(counts: Sequence[float]) -> Array:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / total if total > 0 else values


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two count vectors over the same bins:
    sum((a - e) * ln(a / e)) over proportions, each floored at :data:`PSI_FLOOR`."""
    if len(expected) != len(actual):
        raise InvalidInputError(f"psi: {len(expected)} expected bins vs {len(actual)} actual")
    e = np.maximum(_proportions(expected), PSI_FLOOR)
    a = np.maximum(_proportions(actual), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_binned(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Kolmogorov-Smirnov statistic on binned data: the largest gap between the two
    cumulative distributions at the bin edges (bins must be ordered)."""
    if len(expected) != len(actual):
        raise InvalidInputError(f"ks: {len(expected)} expected bins vs {len(actual)} actual")
    gap = np.abs(np.cumsum(_proportions(expected)) - np.cumsum(_proportions(actual)))
    return float(gap.max()) if gap.size else 0.0


def feature_status(rows: int, psi_value: float, ks_value: float | None, t: Thresholds) -> str:
    """``insufficient_data`` | ``ok`` | ``warn`` | ``alarm`` for one feature."""
    if rows < t.min_rows:
        return "insufficient_data"
    if psi_value > t.psi_alarm or (ks_value is not None and ks_value > t.ks_alarm):
        return "alarm"
    if psi_value > t.psi_warn:
        return "warn"
    return "ok"


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUS_RANK.__getitem__, default="insufficient_data")


def compare_feature(
    name: str, ref: Mapping[str, Any], counts: Sequence[int], missing: int, t: Thresholds
) -> dict[str, Any]:
    """One feature's drift: PSI (missing values as one more bin when either side has any),
    KS for numeric features (categories have no order), and a status."""
    expected = [*ref["counts"]]
    actual = [*counts]
    ref_missing = int(ref.get("missing", 0))
    if ref_missing or missing:
        expected.append(ref_missing)
        actual.append(missing)
    rows = int(sum(counts)) + missing
    psi_value = psi(expected, actual) if rows else 0.0
    ks_value = None
    if ref["kind"] == "numeric":
        ks_value = ks_binned(ref["counts"], counts) if sum(counts) else 0.0
    return {
        "feature": name,
        "kind": ref["kind"],
        "rows": rows,
        "psi": _round(psi_value),
        "ks": None if ks_value is None else _round(ks_value),
        "status": feature_status(rows, psi_value, ks_value, t),
    }


def compare(
    reference: Mapping[str, Any], sketch: Mapping[str, Any], t: Thresholds = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """A drift report of serving data (a merged sketch) against a version's reference:
    per-feature rows for ``inputs`` and ``outputs`` (prediction drift), the features in
    alarm, and the worst status."""
    report: dict[str, Any] = {"rows": int(sketch.get("rows", 0))}
    alarms: list[str] = []
    statuses: list[str] = []
    for section in ("inputs", "outputs"):
        seen = sketch.get(section, {})
        rows = []
        features = reference.get(section, {})
        for name in sorted(features, key=lambda n: _feature_order(n, features[n])):
            ref = features[name]
            got = seen.get(name) or {}
            counts = got.get("counts") or [0] * len(ref["counts"])
            row = compare_feature(name, ref, counts, int(got.get("missing", 0)), t)
            rows.append(row)
            statuses.append(row["status"])
            if row["status"] == "alarm":
                alarms.append(f"{section}:{name}")
        report[section] = rows
    report["alarms"] = alarms
    report["status"] = worst(statuses)
    return report


def merge_sketches(sketches: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum sketches made against the same reference (per replica and interval) into one."""
    merged: dict[str, Any] = {"rows": 0, "inputs": {}, "outputs": {}}
    for sketch in sketches:
        merged["rows"] += int(sketch.get("rows", 0))
        for section in ("inputs", "outputs"):
            into = merged[section]
            for name, got in sketch.get(section, {}).items():
                have = into.setdefault(name, {"counts": [0] * len(got["counts"]), "missing": 0})
                if len(have["counts"]) != len(got["counts"]):
                    continue  # made with other bins: not comparable
                have["counts"] = [a + b for a, b in zip(have["counts"], got["counts"], strict=True)]
                have["missing"] += int(got.get("missing", 0))
    return merged


def _feature_order(name: str, ref: Mapping[str, Any]) -> tuple[str, int, str]:
    """Tensors by name, then columns by number (metadata JSON sorts keys as text)."""
    column = ref.get("column")
    return str(ref.get("tensor", name)), -1 if column is None else int(column), name


def _round(value: float) -> float:
    return round(value, 6) if math.isfinite(value) else value
