"""XGBoost and LightGBM runtimes beyond the contract: Boosters, model files, objectives."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from modelyard.errors import FailedPreconditionError
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes import detect
from modelyard.runtimes.lightgbm import LightGBMRuntime
from modelyard.runtimes.xgboost import XGBoostRuntime
from modelyard.types import Datatype, Signature, TensorSpec
from tests.unit.runtimes.models import iris_like, manifest_for, save_and_load


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return iris_like()


def test_xgboost_raw_booster_binary(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    dtrain = xgb.DMatrix(x, label=(y == 2).astype(int))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, dtrain, 3)
    runtime = save_and_load(booster, tmp_path)
    assert runtime.manifest.runtime_options["classes"] == [0, 1]
    got = runtime.predict({"input": x})
    p = booster.predict(xgb.DMatrix(x))
    np.testing.assert_allclose(got["probabilities"][:, 1], p, atol=1e-7)
    np.testing.assert_array_equal(got["label"], (p > 0.5).astype(int))


def test_xgboost_softmax_has_labels_only(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, objective="multi:softmax").fit(x, y)
    runtime = save_and_load(model, tmp_path)
    assert [o.name for o in runtime.manifest.signature.outputs] == ["label"]
    np.testing.assert_array_equal(runtime.predict({"input": x})["label"], model.predict(x))


def test_xgboost_early_stopping_uses_best_trees(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    model = xgb.XGBRegressor(n_estimators=50, max_depth=2, early_stopping_rounds=2)
    model.fit(x[:60, :3], x[:60, 3], eval_set=[(x[60:, :3], x[60:, 3])], verbose=False)
    assert model.best_iteration < 49
    runtime = save_and_load(model, tmp_path)
    np.testing.assert_allclose(
        runtime.predict({"input": x[:, :3]})["prediction"], model.predict(x[:, :3]), atol=1e-7
    )


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_model_file(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], suffix: str
) -> None:
    x, y = data
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y)
    path = tmp_path / f"given{suffix}"
    model.save_model(str(path))
    assert detect(path) is XGBoostRuntime
    runtime = save_and_load(path, tmp_path / "v")
    assert (tmp_path / "v" / f"model{suffix}").is_file()
    np.testing.assert_array_equal(runtime.predict({"input": x})["label"], model.predict(x))


def test_xgboost_float32_sample_gives_fp32_input(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    model = xgb.XGBClassifier(n_estimators=2).fit(x, y)
    saved = XGBoostRuntime.save(model, tmp_path, sample={"input": x[:2].astype(np.float32)})
    assert saved.signature is not None
    assert saved.signature.inputs[0].datatype is Datatype.FP32


def test_lightgbm_raw_booster_regression(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    params = {"objective": "regression", "verbose": -1, "min_data_in_leaf": 5}
    booster = lgb.train(params, lgb.Dataset(x[:, :3], label=x[:, 3]), num_boost_round=3)
    runtime = save_and_load(booster, tmp_path, options=RuntimeOptions(intra_op_threads=1))
    spec = runtime.manifest.signature.outputs[0]
    assert (spec.name, spec.datatype, spec.shape) == ("prediction", Datatype.FP64, (-1,))
    np.testing.assert_array_equal(
        runtime.predict({"input": x[:, :3]})["prediction"], booster.predict(x[:, :3])
    )


def test_lightgbm_binary_and_model_file(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    model = lgb.LGBMClassifier(n_estimators=3, min_child_samples=5, verbose=-1).fit(x, y == 1)
    path = tmp_path / "given.txt"
    model.booster_.save_model(str(path))
    assert detect(path) is LightGBMRuntime
    runtime = save_and_load(path, tmp_path / "v")
    got = runtime.predict({"input": x})
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(x), atol=1e-12)
    np.testing.assert_array_equal(got["label"], np.asarray(model.predict(x)).astype(int))


def test_unknown_task_and_impossible_outputs_fail_at_load(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    model = lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(x, y)
    saved = LightGBMRuntime.save(model, tmp_path, sample=None)
    manifest = manifest_for("lightgbm", saved, tmp_path)
    broken = manifest.model_copy(update={"runtime_options": {"task": "ranker"}})
    with pytest.raises(FailedPreconditionError, match="task is 'ranker'"):
        LightGBMRuntime(tmp_path, broken, RuntimeOptions()).load()
    wrong = Signature(
        inputs=manifest.signature.inputs,
        outputs=(TensorSpec(name="label", datatype=Datatype.INT64, shape=(-1,)),),
    )
    with pytest.raises(FailedPreconditionError, match="cannot compute output 'label'"):
        LightGBMRuntime(
            tmp_path, manifest.model_copy(update={"signature": wrong}), RuntimeOptions()
        ).load()


def test_broken_files_are_clear_errors(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    from modelyard.errors import InvalidInputError

    x, y = data
    bad = tmp_path / "bad.ubj"
    bad.write_bytes(b"{not xgboost")
    with pytest.raises(InvalidInputError, match=r"bad\.ubj: not a readable XGBoost model"):
        XGBoostRuntime.save(bad, tmp_path / "v", sample=None)

    model = xgb.XGBRegressor(n_estimators=2).fit(x, y)
    saved = XGBoostRuntime.save(model, tmp_path / "w", sample=None)
    manifest = manifest_for("xgboost", saved, tmp_path / "w")
    (tmp_path / "w" / "model.ubj").unlink()
    with pytest.raises(FailedPreconditionError, match=r"model file model\.ubj is missing"):
        XGBoostRuntime(tmp_path / "w", manifest, RuntimeOptions()).load()
