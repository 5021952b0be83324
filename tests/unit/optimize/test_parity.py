"""Parity verdicts from arrays: what each output is, how it is compared, when it fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelyard.optimize.parity import (
    EXACT,
    FLOAT,
    PROBABILITIES,
    compare,
    compare_output,
    max_abs_diff,
    output_kind,
    row_agreement,
)
from modelyard.types import Array

PROBS = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("label", np.array([0, 1, 2]), EXACT),
        ("label", np.array(["a", "b"], dtype=object), EXACT),
        ("flag", np.array([True, False]), EXACT),
        ("prediction", np.array([1.5, 2.5]), FLOAT),
        ("probabilities", np.array([[3.0, -1.0]]), PROBABILITIES),  # named so
        ("scores", PROBS, PROBABILITIES),  # rows are distributions
        ("scores", np.array([[0.2, 0.2], [0.5, 0.5]]), FLOAT),  # first row sums to 0.4
        ("scores", np.array([[0.7], [0.3]]), FLOAT),  # one column: not a class distribution
        ("embedding", np.array([[0.5, -0.5]]), FLOAT),
    ],
)
def test_output_kind(name: str, value: Array, kind: str) -> None:
    assert output_kind(name, value) == kind


@pytest.mark.parametrize(
    ("ref", "got", "expected"),
    [
        ([1.0, 2.0], [1.0, 2.5], 0.5),
        ([[1.0, -2.0]], [[1.25, -2.0]], 0.25),
        ([math.nan, 1.0], [math.nan, 1.0], 0.0),  # NaN in both places is equal
        ([math.nan, 1.0], [0.0, 1.0], math.inf),  # NaN in one place is not
        ([], [], 0.0),
    ],
)
def test_max_abs_diff(ref: list[float], got: list[float], expected: float) -> None:
    assert max_abs_diff(np.array(ref), np.array(got)) == expected


@pytest.mark.parametrize(
    ("ref", "got", "expected"),
    [
        (np.array([0, 1, 2, 3]), np.array([0, 1, 2, 0]), 0.75),
        (np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]), 0.5),  # whole rows
        (np.array(["x", "y"], dtype=object), np.array(["x", "y"], dtype=object), 1.0),
        (np.zeros((0,), dtype=np.int64), np.zeros((0,), dtype=np.int64), 1.0),
        (np.array(7), np.array(8), 0.0),
    ],
)
def test_row_agreement(ref: Array, got: Array, expected: float) -> None:
    assert row_agreement(ref, got) == expected


def test_probabilities_are_compared_by_value_and_by_class() -> None:
    got = np.array([[0.8, 0.2], [0.55, 0.45], [0.5, 0.5]])  # row 2 flips class
    out = compare_output("probabilities", PROBS, got)
    assert out.kind == PROBABILITIES
    assert out.max_abs_diff == pytest.approx(0.15)
    assert out.agreement == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (None, "missing from the candidate"),
        (np.zeros((3, 3)), "shape (3, 3) != (3, 2)"),
        (np.array([["a", "b"]] * 3, dtype=object), "is not numeric"),
    ],
)
def test_outputs_that_cannot_be_compared(candidate: Array | None, problem: str) -> None:
    out = compare_output("probabilities", PROBS, candidate)
    assert out.problem is not None and problem in out.problem


REF = {"label": np.array([0, 1, 1, 0]), "probabilities": np.array([[0.7, 0.3]] * 4)}


@pytest.mark.parametrize(
    ("candidate", "max_diff", "min_agree", "failures"),
    [
        (REF, 0.0, 1.0, []),
        (
            {**REF, "probabilities": REF["probabilities"] + 0.01},
            0.05,
            1.0,
            [],
        ),
        (
            {**REF, "probabilities": REF["probabilities"] + 0.01},
            0.001,
            1.0,
            ["output 'probabilities': max abs diff 0.01 > 0.001"],
        ),
        (
            {**REF, "label": np.array([0, 1, 1, 1])},
            0.0,
            0.8,
            ["output 'label': classes agree on 75.00% of rows < 80.00%"],
        ),
        ({**REF, "label": np.array([0, 1, 1, 1])}, 0.0, 0.75, []),
        ({"label": REF["label"]}, 1.0, 0.0, ["output 'probabilities': missing from the candidate"]),
    ],
)
def test_failures(
    candidate: dict[str, Array], max_diff: float, min_agree: float, failures: list[str]
) -> None:
    parity = compare(REF, candidate)
    assert parity.failures(max_abs_diff=max_diff, min_agreement=min_agree) == failures


def test_summary_numbers_and_metadata_dict() -> None:
    candidate = {"label": np.array([0, 1, 1, 1]), "probabilities": REF["probabilities"] + 0.02}
    parity = compare(REF, candidate)
    assert parity.rows == 4
    assert parity.max_abs_diff == pytest.approx(0.02)
    assert parity.agreement == 0.75  # the worst of label (0.75) and probabilities (1.0)
    assert parity.summary() == "4 rows, max abs diff 0.02, class agreement 75.00%"
    doc = parity.as_dict()
    assert doc["outputs"]["label"] == {"kind": EXACT, "agreement": 0.75}
    assert doc["outputs"]["probabilities"]["agreement"] == 1.0


def test_extra_candidate_outputs_are_ignored_and_nonfinite_is_json_safe() -> None:
    parity = compare({"y": np.array([math.nan])}, {"y": np.array([1.0]), "z": np.array([0])})
    assert [o.name for o in parity.outputs] == ["y"]
    assert parity.failures(max_abs_diff=1e9, min_agreement=0.0) == [
        "output 'y': max abs diff inf > 1e+09"
    ]
    assert parity.as_dict()["max_abs_diff"] == "inf"
