"""The in-memory model of a registry version, as :func:`modelyard.convert.to_onnx` takes it:
a scikit-learn estimator, or an XGBoost / LightGBM *sklearn-API* model rebuilt around the
booster file the version stores.

The registry keeps boosters in their engines' own formats (``model.ubj``, ``model.txt``) and the
task (classifier with its classes, or regressor) in the manifest's ``runtime_options``. XGBoost's
wrapper loads such a file itself; LightGBM's has no public way to wrap a Booster, so the fitted
attributes are set as its ``fit`` sets them (lightgbm 4.x). Either way the converted graph is
checked against the *served* version's outputs before anything is pushed, so a wrapper that
behaves differently is caught there, not in production.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from modelyard.convert import INPUT
from modelyard.errors import FailedPreconditionError, install_hint
from modelyard.registry.records import ModelVersion
from modelyard.runtimes._boosting import CLASSIFIER, Task
from modelyard.types import Datatype

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")


def check_convertible(version: ModelVersion) -> None:
    """FailedPreconditionError unless ``version`` is a tabular model ``to_onnx`` can convert."""
    kind = version.manifest.runtime
    if kind == "onnx":
        raise FailedPreconditionError(
            f"{version.ref} is already ONNX; nothing to convert (to shrink it: modelyard quantize "
            f"{version.ref})"
        )
    if kind not in CONVERTIBLE:
        raise FailedPreconditionError(
            f"{version.ref} is a {kind!r} version; convert takes {', '.join(CONVERTIBLE)} versions"
        )
    inputs = version.manifest.signature.inputs
    if len(inputs) != 1:
        raise FailedPreconditionError(
            f"{version.ref} has {len(inputs)} inputs; convert takes one tabular input"
        )
    spec = inputs[0]
    if spec.datatype not in (Datatype.FP32, Datatype.FP64) or len(spec.shape) != 2:
        raise FailedPreconditionError(
            f"{version.ref} input '{spec.name}' is {spec.datatype.value} {list(spec.shape)}; "
            "convert takes one FP32/FP64 input of rows of features (text pipelines stay sklearn)"
        )

    if spec.name != INPUT:
        raise FailedPreconditionError(
            f"{version.ref} input is named '{spec.name}'; the ONNX graph would name it '{INPUT}' "
            "and break its callers"
        )


def rebuild(version: ModelVersion, directory: Path, *, allow_pickle: bool) -> Any:
    """The model of ``version`` from its fetched files in ``directory``."""
    kind = version.manifest.runtime
    options = dict(version.manifest.runtime_options)
    if kind == "sklearn":
        from modelyard.runtimes.sklearn import FILES, load_file

        fmt = str(options.get("format", "skops"))
        if fmt not in FILES:
            raise FailedPreconditionError(f"{version.ref}: unknown sklearn format {fmt!r}")
        return load_file(directory / FILES[fmt], fmt, allow_pickle)
    task = Task.from_options(options, kind)
    if kind == "xgboost":
        return _xgboost(directory / str(options.get("file", "model.ubj")), task)
    if kind == "lightgbm":
        return _lightgbm(directory / str(options.get("file", "model.txt")), task)
    raise FailedPreconditionError(f"{version.ref}: cannot rebuild a {kind!r} model")


def _engine(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise install_hint(name, name) from exc


def _xgboost(file: Path, task: Task) -> Any:
    xgb = _engine("xgboost")
    model = xgb.XGBClassifier() if task.task == CLASSIFIER else xgb.XGBRegressor()
    model.load_model(str(file))
    return model


def _lightgbm(file: Path, task: Task) -> Any:
    lgb = _engine("lightgbm")
    from sklearn.preprocessing import LabelEncoder

    booster = lgb.Booster(model_file=str(file))
    model = lgb.LGBMClassifier() if task.task == CLASSIFIER else lgb.LGBMRegressor()
    model._Booster = booster
    model._n_features = booster.num_feature()
    model._n_features_in = booster.num_feature()
    model._objective = str(booster.params.get("objective", "")).split()[0] or None
    if task.task == CLASSIFIER:
        model._le = LabelEncoder().fit(list(task.classes))
        model._classes = model._le.classes_
        model._n_classes = len(task.classes)
    model.fitted_ = True
    return model
