"""Reloading a skops file (a model evicted from RAM comes back): the trust check's type listing
is remembered per unchanged file, and remembering never trusts a type unchecked."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skops.io.exceptions import UntrustedTypesFoundException

import modelyard.runtimes.sklearn as sk
from modelyard.errors import UnsafeArtifactError
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes.sklearn import SklearnRuntime
from tests.unit.runtimes.models import iris_like, manifest_for

Listings = Callable[[], int]


def halve(x: np.ndarray) -> np.ndarray:
    """A custom function: skops cannot know it is harmless."""
    return x / 2


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> Listings:
    """Counts skops type listings; the memo starts empty."""
    calls: list[object] = []
    real = skops.io.get_untrusted_types

    def counting(*, file: Path) -> list[str]:
        calls.append(file)
        return list(real(file=file))

    monkeypatch.setattr(skops.io, "get_untrusted_types", counting)
    monkeypatch.setattr(sk, "_SKOPS_TYPES", {})
    return lambda: len(calls)


def saved_runtime(tmp_path: Path, model: object, options: RuntimeOptions) -> SklearnRuntime:
    saved = SklearnRuntime.save(model, tmp_path, sample=None)
    return SklearnRuntime(tmp_path, manifest_for("sklearn", saved, tmp_path), options)


def test_reloading_an_unchanged_file_lists_its_types_once(
    tmp_path: Path, listings: Listings
) -> None:
    x, y = iris_like()
    model = LogisticRegression(max_iter=500).fit(x, y)
    first = saved_runtime(tmp_path, model, RuntimeOptions())
    base = listings()  # save() may list the types itself
    for _ in range(3):
        runtime = SklearnRuntime(first.path, first.manifest, RuntimeOptions())
        runtime.load()
        np.testing.assert_array_equal(runtime.predict({"input": x})["label"], model.predict(x))
    assert listings() - base == 1


def test_an_unsafe_file_is_refused_on_every_reload(tmp_path: Path, listings: Listings) -> None:
    x, y = iris_like()
    model = make_pipeline(FunctionTransformer(halve), LogisticRegression(max_iter=500)).fit(x, y)
    runtime = saved_runtime(tmp_path, model, RuntimeOptions())
    for _ in range(2):
        with pytest.raises(UnsafeArtifactError, match=r"test_sklearn_reload\.halve"):
            SklearnRuntime(runtime.path, runtime.manifest, RuntimeOptions()).load()


def test_a_replaced_file_is_listed_again(tmp_path: Path, listings: Listings) -> None:
    x, y = iris_like()
    safe = saved_runtime(tmp_path, LogisticRegression(max_iter=500).fit(x, y), RuntimeOptions())
    safe.load()
    unsafe = make_pipeline(FunctionTransformer(halve), LogisticRegression(max_iter=500)).fit(x, y)
    file = tmp_path / "model.skops"
    file.unlink()
    skops.io.dump(unsafe, file)
    with pytest.raises(UnsafeArtifactError, match="halve"):
        SklearnRuntime(safe.path, safe.manifest, RuntimeOptions()).load()


def test_a_stale_listing_cannot_make_a_type_trusted(tmp_path: Path, listings: Listings) -> None:
    x, y = iris_like()
    model = make_pipeline(FunctionTransformer(halve), LogisticRegression(max_iter=500)).fit(x, y)
    runtime = saved_runtime(tmp_path, model, RuntimeOptions())
    st = os.stat(tmp_path / "model.skops")
    # As if the file had been swapped under an identity remembered with no unsafe types:
    sk._SKOPS_TYPES[(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] = []
    with pytest.raises(UntrustedTypesFoundException, match="halve"):
        runtime.load()  # skops' own audit at load refuses what the listing did not name
