"""Drift statistics as pure functions: reference statistics, PSI, binned KS, statuses, merging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelyard.errors import InvalidInputError
from modelyard.monitoring import drift
from modelyard.monitoring.drift import Thresholds
from modelyard.monitoring.sketches import Sketcher
from modelyard.registry import catalog


@pytest.mark.parametrize(
    ("expected", "actual", "want"),
    [
        ([10, 10, 10], [10, 10, 10], 0.0),
        ([1, 2, 3], [10, 20, 30], 0.0),  # proportions, not counts
        ([50, 50], [90, 10], 0.4 * math.log(1.8) + 0.4 * math.log(5.0)),
        ([90, 10], [50, 50], 0.4 * math.log(1.8) + 0.4 * math.log(5.0)),  # symmetric
        ([100, 0], [0, 100], 2 * (1 - 1e-4) * math.log(1e4)),  # empty bins floored
        ([0, 0], [0, 0], 0.0),
    ],
)
def test_psi(expected: list[int], actual: list[int], want: float) -> None:
    assert drift.psi(expected, actual) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("expected", "actual", "want"),
    [
        ([1, 1, 1, 1], [5, 5, 5, 5], 0.0),
        ([1, 0, 0, 0], [0, 0, 0, 1], 1.0),
        ([25, 25, 25, 25], [50, 50, 0, 0], 0.5),
        ([25, 25, 25, 25], [0, 0, 50, 50], 0.5),
        ([10, 80, 10], [10, 70, 20], 0.1),
    ],
)
def test_ks_binned(expected: list[int], actual: list[int], want: float) -> None:
    assert drift.ks_binned(expected, actual) == pytest.approx(want)


@pytest.mark.parametrize("func", [drift.psi, drift.ks_binned])
def test_bin_count_mismatch_is_a_clear_error(func: object) -> None:
    with pytest.raises(InvalidInputError, match="bins"):
        func([1, 2], [1, 2, 3])  # type: ignore[operator]


T = Thresholds()  # psi_warn 0.1, psi_alarm 0.2, ks_alarm 0.2, min_rows 200


@pytest.mark.parametrize(
    ("rows", "psi", "ks", "want"),
    [
        (199, 5.0, 0.9, "insufficient_data"),
        (200, 0.0, 0.0, "ok"),
        (1000, 0.1, None, "ok"),
        (1000, 0.1001, None, "warn"),
        (1000, 0.2, 0.2, "warn"),  # thresholds are strict: at the line is not over it
        (1000, 0.2001, None, "alarm"),
        (1000, 0.05, 0.21, "alarm"),  # KS alone can alarm
        (1000, 0.15, 0.05, "warn"),
    ],
)
def test_feature_status(rows: int, psi: float, ks: float | None, want: str) -> None:
    assert drift.feature_status(rows, psi, ks, T) == want


@pytest.mark.parametrize(
    ("statuses", "want"),
    [
        ([], "insufficient_data"),
        (["insufficient_data", "ok"], "ok"),
        (["ok", "warn", "ok"], "warn"),
        (["warn", "alarm", "insufficient_data"], "alarm"),
    ],
)
def test_worst_status(statuses: list[str], want: str) -> None:
    assert drift.worst(statuses) == want


def test_numeric_reference_has_quantile_bins() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10_000, 3)).astype(np.float32)
    ref = drift.reference_stats({"x": x})
    assert ref["format"] == 1 and ref["outputs"] == {}
    assert list(ref["inputs"]) == ["x[0]", "x[1]", "x[2]"]
    f = ref["inputs"]["x[1]"]
    assert f["kind"] == "numeric" and f["tensor"] == "x" and f["column"] == 1
    assert len(f["edges"]) == 9 and len(f["counts"]) == 10
    assert all(abs(c - 1000) <= 2 for c in f["counts"])  # quantile bins hold equal shares
    assert f["missing"] == 0


def test_categorical_references() -> None:
    n = 1000
    codes = np.array([0, 1, 1, 2] * (n // 4), dtype=np.int64)
    words = np.array([b"a", b"b", b"b", b"\xff"] * (n // 4), dtype=object)
    flags = np.array([True, False] * (n // 2))
    ref = drift.reference_stats({"code": codes, "word": words, "flag": flags})
    code = ref["inputs"]["code"]
    assert code["kind"] == "categorical" and code["column"] is None
    assert code["categories"] == ["1", "0", "2"] and code["counts"] == [500, 250, 250, 0]
    word = ref["inputs"]["word"]
    assert word["categories"] == ["b", "a", "\ufffd"] and word["counts"] == [500, 250, 250, 0]
    assert ref["inputs"]["flag"]["categories"] == ["False", "True"]


def test_many_categories_share_an_other_bucket() -> None:
    values = np.array([f"c{i % 30}".encode() for i in range(3000)], dtype=object)
    f = drift.reference_stats({"s": values}, max_categories=5)["inputs"]["s"]
    assert len(f["categories"]) == 5 and f["counts"] == [100] * 5 + [2500]


def test_integers_with_many_values_are_numeric() -> None:
    f = drift.reference_stats({"n": np.arange(1000, dtype=np.int32)})["inputs"]["n"]
    assert f["kind"] == "numeric" and sum(f["counts"]) == 1000


def test_missing_values_and_unusable_columns() -> None:
    x = np.ones((100, 2), dtype=np.float64)
    x[:10, 0] = np.nan
    x[:, 1] = np.nan  # no finite value at all: no feature
    ref = drift.reference_stats({"x": x})
    assert list(ref["inputs"]) == ["x[0]"]
    assert ref["inputs"]["x[0]"]["missing"] == 10
    assert ref["inputs"]["x[0]"]["edges"] == [1.0]  # a constant column: one edge, two bins


def test_wide_and_multidimensional_tensors() -> None:
    image = np.zeros((10, 2, 3), dtype=np.float32)
    wide = np.zeros((10, drift.MAX_COLUMNS + 1), dtype=np.float32)
    ref = drift.reference_stats({"image": image, "wide": wide})
    assert list(ref["inputs"]) == [f"image[{j}]" for j in range(6)]


def test_reference_is_valid_version_metadata() -> None:
    rng = np.random.default_rng(2)
    ref = drift.reference_stats(
        {"x": rng.normal(size=(500, 4)), "s": np.array([b"u", b"v"] * 250, dtype=object)},
        {"y": rng.random(500)},
    )
    assert catalog.check_metadata({drift.REFERENCE_KEY: ref})[drift.REFERENCE_KEY] == ref
    assert drift.check_reference(ref) == ref


@pytest.mark.parametrize(
    ("inputs", "kwargs", "match"),
    [
        ({"x": np.float32(1.0)}, {}, r"sample_inputs\['x'\] needs at least one row"),
        ({"x": np.zeros((0, 3))}, {}, "at least one row"),
        ({"x": np.zeros((5, 3))}, {"bins": 1}, "bins must be between 2 and 100"),
        ({"x": np.zeros((5, 3))}, {"max_categories": 0}, "max_categories"),
    ],
)
def test_bad_samples_are_clear_errors(
    inputs: dict[str, object], kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        drift.reference_stats(inputs, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [None, {}, {"format": 99}, {"format": 1, "inputs": [], "outputs": {}}]
)
def test_check_reference_rejects_foreign_data(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="drift_reference"):
        drift.check_reference(bad)


def test_sketch_of_the_reference_sample_matches_it_exactly() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 3))
    x[::50, 2] = np.nan
    s = rng.choice(np.array([b"a", b"b", b"c"], dtype=object), size=2000)
    y = rng.integers(0, 3, size=(2000, 1))
    ref = drift.reference_stats({"x": x, "s": s}, {"y": y})
    sketcher = Sketcher(ref)
    sketch = sketcher.empty()
    sketcher.add(sketch, {"x": x[:700], "s": s[:700]}, {"y": y[:700]})
    sketcher.add(sketch, {"x": x[700:], "s": s[700:]}, {"y": y[700:]})
    sketch["rows"] = 2000
    for section in ("inputs", "outputs"):
        for name, f in ref[section].items():
            assert sketch[section][name]["counts"] == f["counts"], name
            assert sketch[section][name]["missing"] == f["missing"], name
    report = drift.compare(ref, sketch)
    assert report["status"] == "ok" and report["alarms"] == []
    assert all(row["psi"] == 0.0 for row in report["inputs"] + report["outputs"])


def test_sketch_puts_unknown_categories_in_other_and_skips_misfits() -> None:
    ref = drift.reference_stats({"s": np.array([b"a", b"b"] * 10, dtype=object)})
    sketcher = Sketcher(ref)
    sketch = sketcher.empty()
    sketcher.add(sketch, {"s": np.array([b"a", b"zzz", None], dtype=object)}, {})
    assert sketch["inputs"]["s"] == {"counts": [1, 0, 1], "missing": 1}
    sketcher.add(sketch, {"s": np.zeros((2, 2), dtype=object)}, {})  # 2-D: not this feature
    sketcher.add(sketch, {"other": np.zeros(3)}, {})
    assert sketch["inputs"]["s"] == {"counts": [1, 0, 1], "missing": 1}


def test_compare_flags_only_the_shifted_feature() -> None:
    rng = np.random.default_rng(4)
    ref = drift.reference_stats({"x": rng.normal(size=(20_000, 5))})
    served = rng.normal(size=(2_000, 5))
    served[:, 3] += 1.0
    sketcher = Sketcher(ref)
    sketch = sketcher.empty()
    sketcher.add(sketch, {"x": served}, {})
    sketch["rows"] = 2000
    report = drift.compare(ref, sketch)
    assert report["alarms"] == ["inputs:x[3]"] and report["status"] == "alarm"
    by_name = {row["feature"]: row for row in report["inputs"]}
    assert by_name["x[3]"]["psi"] > 0.2 and by_name["x[3]"]["ks"] > 0.2
    assert all(by_name[f"x[{j}]"]["status"] == "ok" for j in (0, 1, 2, 4))


def test_compare_counts_missing_values_as_drift() -> None:
    ref = drift.reference_stats({"x": np.arange(1000, dtype=np.float64)})
    sketch = {"rows": 1000, "inputs": {"x": {"counts": [50] * 10, "missing": 500}}}
    row = drift.compare(ref, sketch)["inputs"][0]
    assert row["rows"] == 1000 and row["status"] == "alarm"
    assert row["ks"] == 0.0  # the values that are there look alike; PSI sees the NaNs


def test_compare_without_serving_data_is_insufficient() -> None:
    ref = drift.reference_stats({"x": np.arange(100.0)}, {"y": np.arange(100.0)})
    report = drift.compare(ref, {"rows": 0})
    assert report["status"] == "insufficient_data"
    assert [r["rows"] for r in report["inputs"] + report["outputs"]] == [0, 0]


def test_merge_sketches_sums_counts_and_skips_other_bins() -> None:
    a = {"rows": 3, "inputs": {"x": {"counts": [1, 2], "missing": 0}}, "outputs": {}}
    b = {"rows": 4, "inputs": {"x": {"counts": [3, 0], "missing": 1}}, "outputs": {}}
    odd = {"rows": 1, "inputs": {"x": {"counts": [1, 0, 0], "missing": 0}}, "outputs": {}}
    merged = drift.merge_sketches([a, b, odd])
    assert merged["rows"] == 8
    assert merged["inputs"]["x"] == {"counts": [4, 2], "missing": 1}
