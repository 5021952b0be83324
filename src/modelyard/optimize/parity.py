"""Parity between a model's outputs and a candidate's (a converted or quantised copy) on the same
inputs: pure functions over arrays, so every verdict is table-testable.

Each output the reference has is compared by what it is:

* **float** outputs (predictions, scores): the largest absolute difference of any element;
* **probabilities** (a 2-D float output named ``*prob*``, or whose rows are in [0, 1] and sum to
  1): the largest absolute difference *and* the share of rows whose arg-max class agrees;
* **exact** outputs (integers, booleans, strings: labels, class ids): the share of rows that are
  equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.types import Array

FLOAT = "float"
PROBABILITIES = "probabilities"
EXACT = "exact"


@dataclass(frozen=True)
class OutputParity:
    """How one output of the candidate compares with the reference's.

    ``max_abs_diff`` is set for float outputs, ``agreement`` (share of rows, 0..1) for exact and
    probability outputs; ``problem`` says why nothing could be compared (missing, shape)."""

    name: str
    kind: str
    max_abs_diff: float | None = None
    agreement: float | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.max_abs_diff is not None:
            out["max_abs_diff"] = self.max_abs_diff
        if self.agreement is not None:
            out["agreement"] = self.agreement
        if self.problem is not None:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class Parity:
    """Parity of every reference output on ``rows`` rows."""

    rows: int
    outputs: tuple[OutputParity, ...]

    @property
    def max_abs_diff(self) -> float | None:
        """The largest difference over all float outputs (None when there are none)."""
        diffs = [o.max_abs_diff for o in self.outputs if o.max_abs_diff is not None]
        return max(diffs) if diffs else None

    @property
    def agreement(self) -> float | None:
        """The lowest class agreement over exact and probability outputs (None when none)."""
        shares = [o.agreement for o in self.outputs if o.agreement is not None]
        return min(shares) if shares else None

    def failures(self, *, max_abs_diff: float, min_agreement: float) -> list[str]:
        """Why the candidate is not within the thresholds; empty when it is."""
        out: list[str] = []
        for o in self.outputs:
            if o.problem is not None:
                out.append(f"output '{o.name}': {o.problem}")
                continue
            if o.max_abs_diff is not None and not o.max_abs_diff <= max_abs_diff:
                out.append(
                    f"output '{o.name}': max abs diff {o.max_abs_diff:.3g} > {max_abs_diff:g}"
                )
            if o.agreement is not None and o.agreement < min_agreement:
                out.append(
                    f"output '{o.name}': classes agree on {o.agreement:.2%} of rows "
                    f"< {min_agreement:.2%}"
                )
        return out

    def summary(self) -> str:
        """One line for people: rows, max abs diff, class agreement."""
        parts = [f"{self.rows} rows"]
        if self.max_abs_diff is not None:
            parts.append(f"max abs diff {self.max_abs_diff:.3g}")
        if self.agreement is not None:
            parts.append(f"class agreement {self.agreement:.2%}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (metadata of the pushed version)."""
        out: dict[str, Any] = {"rows": self.rows}
        if self.max_abs_diff is not None:
            out["max_abs_diff"] = _finite(self.max_abs_diff)
        if self.agreement is not None:
            out["agreement"] = self.agreement
        out["outputs"] = {o.name: o.as_dict() for o in self.outputs}
        return out


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def output_kind(name: str, reference: Array) -> str:
    """What an output is, judged from the reference's values: float, probabilities or exact."""
    if reference.dtype.kind not in "fc":
        return EXACT
    if reference.ndim == 2 and reference.shape[1] >= 2:
        if "prob" in name.lower():
            return PROBABILITIES
        if reference.size and _rows_are_distributions(reference):
            return PROBABILITIES
    return FLOAT


def _rows_are_distributions(arr: Array) -> bool:
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        return False
    return bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))


def max_abs_diff(reference: Array, candidate: Array) -> float:
    """The largest absolute elementwise difference; NaN in both places counts as equal, NaN in
    one place as an infinite difference. 0.0 for empty arrays."""
    ref = reference.astype(np.float64)
    got = candidate.astype(np.float64)
    both_nan = np.isnan(ref) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.abs(ref - got))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max()) if diff.size else 0.0


def row_agreement(reference: Array, candidate: Array) -> float:
    """The share of rows (first axis) where every element is equal; 1.0 when there are none."""
    if reference.ndim == 0:
        return 1.0 if bool(np.all(reference == candidate)) else 0.0
    rows = int(reference.shape[0])
    if rows == 0:
        return 1.0
    width = int(np.prod(reference.shape[1:], dtype=np.int64))
    equal = reference.reshape(rows, width) == candidate.reshape(rows, width)
    return float(np.mean(np.all(equal, axis=1)))


def compare_output(name: str, reference: Array, candidate: Array | None) -> OutputParity:
    """Parity of one output (``candidate`` None: the candidate does not produce it)."""
    kind = output_kind(name, reference)
    if candidate is None:
        return OutputParity(name=name, kind=kind, problem="missing from the candidate")
    if tuple(candidate.shape) != tuple(reference.shape):
        return OutputParity(
            name=name,
            kind=kind,
            problem=f"shape {tuple(candidate.shape)} != {tuple(reference.shape)}",
        )
    if kind == EXACT:
        return OutputParity(name=name, kind=kind, agreement=row_agreement(reference, candidate))
    if candidate.dtype.kind not in "fciub":
        return OutputParity(name=name, kind=kind, problem=f"dtype {candidate.dtype} is not numeric")
    diff = max_abs_diff(reference, candidate)
    if kind == PROBABILITIES:
        agree = row_agreement(np.argmax(reference, axis=1), np.argmax(candidate, axis=1))
        return OutputParity(name=name, kind=kind, max_abs_diff=diff, agreement=agree)
    return OutputParity(name=name, kind=kind, max_abs_diff=diff)


def compare(reference: Mapping[str, Array], candidate: Mapping[str, Array]) -> Parity:
    """Parity of every reference output (outputs only the candidate has are ignored)."""
    arrays = [np.asarray(a) for a in reference.values()]
    rows = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else (1 if arrays else 0)
    outputs = tuple(
        compare_output(name, np.asarray(ref), _maybe(candidate.get(name)))
        for name, ref in reference.items()
    )
    return Parity(rows=rows, outputs=outputs)


def _maybe(value: Array | None) -> Array | None:
    return None if value is None else np.asarray(value)
