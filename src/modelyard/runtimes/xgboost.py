"""XGBoost (kind ``xgboost``): sklearn-API models or Boosters in XGBoost's own format, never pickle.

Files: ``model.ubj`` (UBJSON, the default) or ``model.json`` when a JSON model file was pushed.
Whether the model is a classifier (and its classes) or a regressor is recorded at push in the
manifest's ``runtime_options``; prediction goes through ``Booster.inplace_predict``, which is
thread-safe, and reproduces the sklearn wrapper's ``predict``/``predict_proba``. Columns are
matched by position (feature names, if any, are not checked). Outputs are FP32, XGBoost's
precision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import xgboost as xgb

from modelyard.errors import FailedPreconditionError, InvalidInputError
from modelyard.manifest import Manifest
from modelyard.runtime import RuntimeOptions, SavedModel
from modelyard.runtimes._booster_runtime import BoosterRuntime, require_fitted
from modelyard.runtimes._boosting import CLASSIFIER, REGRESSOR, Task
from modelyard.runtimes._common import as_path, copy_file, sample_array
from modelyard.runtimes._registry import register
from modelyard.types import Array, Datatype

_SUFFIXES = {".ubj": "model.ubj", ".json": "model.json"}
# Objectives whose output is a class index rather than probabilities.
_INDEX_OBJECTIVES = frozenset({"multi:softmax", "binary:hinge"})
_PROBA_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob"})


def _is_json_model(path: Path) -> bool:
    with path.open("rb") as fh:
        return b'"learner"' in fh.read(4096)


def task_of(booster: xgb.Booster) -> Task:
    """Classifier or regressor, from the objective recorded in the booster's config."""
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    params = learner["learner_model_param"]
    n_classes = max(int(params.get("num_class", "0")), 2)
    if objective in _PROBA_OBJECTIVES or objective in _INDEX_OBJECTIVES:
        return Task(
            task=CLASSIFIER,
            classes=tuple(range(n_classes)),
            probabilities=objective in _PROBA_OBJECTIVES,
        )
    return Task(task=REGRESSOR, n_outputs=max(int(params.get("num_target", "1")), 1))


@register
class XGBoostRuntime(BoosterRuntime[xgb.Booster]):
    """XGBoost Boosters and sklearn-API models (kind ``xgboost``)."""

    kind: ClassVar[str] = "xgboost"
    engine: ClassVar[str] = "XGBoost"
    engine_error: ClassVar[type[Exception]] = xgb.core.XGBoostError

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._range: tuple[int, int] = (0, 0)

    @classmethod
    def can_save(cls, obj: object) -> bool:
        path = as_path(obj)
        if path is not None:
            suffix = path.suffix.lower()
            return suffix == ".ubj" or (suffix == ".json" and _is_json_model(path))
        return isinstance(obj, xgb.Booster | xgb.XGBModel)

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Save with ``save_model`` (UBJSON), or copy a ``.ubj``/``.json`` model file."""
        directory.mkdir(parents=True, exist_ok=True)
        path = as_path(obj)
        if path is not None:
            name = _SUFFIXES[path.suffix.lower()]
            cls.read_booster(path)  # a clear error naming the caller's file, before copying it
            copy_file(path, directory, name)
        elif isinstance(obj, xgb.XGBModel | xgb.Booster):
            if isinstance(obj, xgb.XGBModel):
                require_fitted(obj)
            name = "model.ubj"
            obj.save_model(str(directory / name))  # the sklearn wrapper adds its own attributes
        else:
            raise InvalidInputError(f"xgboost runtime: cannot save {type(obj).__qualname__}")
        booster = cls.read_booster(directory / name)
        task = task_of(booster)
        classes = getattr(obj, "classes_", None)
        if task.task == CLASSIFIER and classes is not None:
            task = replace(task, classes=tuple(int(c) for c in classes))
        signature = task.signature(booster.num_features(), sample_array(sample), Datatype.FP32)
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        return SavedModel(
            signature=signature,
            runtime_options={"file": name, **task.to_options()},
            metadata={"objective": objective, "xgboost_version": xgb.__version__},
        )

    def load(self) -> None:
        name = str(self.manifest.runtime_options.get("file", "model.ubj"))
        if name not in _SUFFIXES.values():
            raise FailedPreconditionError(f"xgboost runtime: unexpected model file {name!r}")
        booster = self._load_measured(self.path / name)
        booster.set_param({"nthread": self.options.intra_op_threads})
        best = booster.attr("best_iteration")
        # As the sklearn wrapper does: after early stopping, predict with the best trees only.
        self._range = (0, int(best) + 1) if best is not None else (0, 0)
        self._booster = booster

    @classmethod
    def _read_file(cls, file: str) -> xgb.Booster:
        return xgb.Booster(model_file=file)

    def _raw_predict(self, booster: xgb.Booster, data: Array) -> Any:
        return booster.inplace_predict(data, iteration_range=self._range, validate_features=False)
