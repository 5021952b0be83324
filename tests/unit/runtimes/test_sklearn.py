"""scikit-learn runtime: safe loading (skops trust, pickle opt-in), signatures, outputs."""

from __future__ import annotations

import importlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    MissingDependencyError,
    UnsafeArtifactError,
)
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes import detect
from modelyard.runtimes.sklearn import SklearnRuntime
from modelyard.types import Datatype, Signature, TensorSpec
from tests.unit.runtimes.models import (
    SENTIMENT,
    TEXTS,
    iris_like,
    manifest_for,
    save_and_load,
    strings,
)


def halve(x: np.ndarray) -> np.ndarray:
    """A custom function: skops cannot know it is harmless."""
    return x / 2


@pytest.fixture(scope="module")
def logreg() -> LogisticRegression:
    x, y = iris_like()
    return LogisticRegression(max_iter=500).fit(x, y)


def test_custom_function_is_refused_without_opt_in(tmp_path: Path) -> None:
    x, y = iris_like()
    model = make_pipeline(FunctionTransformer(halve), LogisticRegression(max_iter=500)).fit(x, y)
    saved = SklearnRuntime.save(model, tmp_path, sample=None)
    assert saved.metadata["untrusted_types"] == [f"{__name__}.halve"]
    manifest = manifest_for("sklearn", saved, tmp_path)

    refused = SklearnRuntime(tmp_path, manifest, RuntimeOptions())
    with pytest.raises(UnsafeArtifactError, match=r"test_sklearn\.halve"):
        refused.load()

    trusted = SklearnRuntime(tmp_path, manifest, RuntimeOptions(allow_pickle=True))
    trusted.load()
    got = trusted.predict({"input": x[:5]})
    np.testing.assert_array_equal(got["label"], model.predict(x[:5]))


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickle_files_load_only_with_opt_in(
    tmp_path: Path, logreg: LogisticRegression, suffix: str
) -> None:
    src = tmp_path / f"model{suffix}"
    if suffix == ".pkl":
        src.write_bytes(pickle.dumps(logreg))
    else:
        importlib.import_module("joblib").dump(logreg, src)
    assert detect(src) is SklearnRuntime
    version = tmp_path / "version"
    saved = SklearnRuntime.save(str(src), version, sample=None)
    assert saved.runtime_options["format"] == ("pickle" if suffix == ".pkl" else "joblib")
    assert saved.signature is not None and saved.signature.outputs[0].name == "label"
    manifest = manifest_for("sklearn", saved, version)

    with pytest.raises(UnsafeArtifactError, match="allow_pickle"):
        SklearnRuntime(version, manifest, RuntimeOptions()).load()

    runtime = SklearnRuntime(version, manifest, RuntimeOptions(allow_pickle=True))
    runtime.load()
    x, _ = iris_like()
    np.testing.assert_array_equal(runtime.predict({"input": x})["label"], logreg.predict(x))


def test_skops_file_can_be_pushed(tmp_path: Path, logreg: LogisticRegression) -> None:
    import skops.io

    src = tmp_path / "given.skops"
    skops.io.dump(logreg, src)
    assert detect(src) is SklearnRuntime
    runtime = save_and_load(src, tmp_path / "version")
    x, _ = iris_like()
    np.testing.assert_array_equal(runtime.predict({"input": x})["label"], logreg.predict(x))
    assert (tmp_path / "version" / "model.skops").is_file()


def test_only_signature_outputs_are_computed(tmp_path: Path, logreg: LogisticRegression) -> None:
    saved = SklearnRuntime.save(logreg, tmp_path, sample=None)
    assert saved.signature is not None
    only_label = Signature(inputs=saved.signature.inputs, outputs=saved.signature.outputs[:1])
    runtime = SklearnRuntime(
        tmp_path, manifest_for("sklearn", saved, tmp_path, signature=only_label), RuntimeOptions()
    )
    runtime.load()
    x, _ = iris_like()
    assert list(runtime.predict({"input": x})) == ["label"]


def test_impossible_output_fails_at_load(tmp_path: Path) -> None:
    x, _ = iris_like()
    saved = SklearnRuntime.save(LinearRegression().fit(x, x[:, 0]), tmp_path, sample=None)
    assert saved.signature is not None
    wrong = Signature(
        inputs=saved.signature.inputs,
        outputs=(TensorSpec(name="probabilities", datatype=Datatype.FP64, shape=(-1, 2)),),
    )
    runtime = SklearnRuntime(
        tmp_path, manifest_for("sklearn", saved, tmp_path, signature=wrong), RuntimeOptions()
    )
    with pytest.raises(FailedPreconditionError, match="'probabilities'"):
        runtime.load()


def test_multi_target_regressor_signature(tmp_path: Path) -> None:
    x, _ = iris_like()
    model = LinearRegression().fit(x[:, :2], x[:, 2:])
    runtime = save_and_load(model, tmp_path)
    spec = runtime.manifest.signature.outputs[0]
    assert (spec.name, spec.datatype, spec.shape) == ("prediction", Datatype.FP64, (-1, 2))
    np.testing.assert_allclose(
        runtime.predict({"input": x[:3, :2]})["prediction"], model.predict(x[:3, :2])
    )


def test_text_pipeline_accepts_bytes_too(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, SENTIMENT)
    runtime = save_and_load(model, tmp_path)
    got = runtime.predict({"text": strings(TEXTS, raw=True)})
    assert list(got["label"]) == list(model.predict(TEXTS))


def test_transformer_gives_output(tmp_path: Path) -> None:
    from sklearn.decomposition import PCA

    x, _ = iris_like()
    model = PCA(n_components=2).fit(x)
    runtime = save_and_load(model, tmp_path)
    assert [o.name for o in runtime.manifest.signature.outputs] == ["output"]
    np.testing.assert_allclose(runtime.predict({"input": x[:4]})["output"], model.transform(x[:4]))


def test_missing_input_is_named(tmp_path: Path, logreg: LogisticRegression) -> None:
    runtime = save_and_load(logreg, tmp_path)
    with pytest.raises(InvalidInputError, match="'input' is missing"):
        runtime.predict({"features": np.zeros((1, 4))})


def test_unfitted_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not fitted"):
        SklearnRuntime.save(LogisticRegression(), tmp_path, sample=None)


def test_dataframe_fitted_model_needs_pandas(
    tmp_path: Path, logreg: LogisticRegression, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = SklearnRuntime.save(logreg, tmp_path, sample=None)
    manifest = manifest_for("sklearn", saved, tmp_path).model_copy(
        update={"runtime_options": {"format": "skops", "feature_names": ["a", "b", "c", "d"]}}
    )
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match="pandas"):
        SklearnRuntime(tmp_path, manifest, RuntimeOptions()).load()


def test_corrupt_pickle_push_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InvalidInputError, match=r"model\.pkl: not a loadable pickle file"):
        SklearnRuntime.save(bad, tmp_path / "v", sample=None)
