"""LightGBM (kind ``lightgbm``): sklearn-API models or Boosters in LightGBM's text format.

The file is ``model.txt`` (``Booster.save_model``), never pickle. Whether the model is a classifier
(with its class labels, which may be strings) or a regressor is recorded at push in the manifest's
``runtime_options``; prediction reproduces the sklearn wrapper's ``predict``/``predict_proba``.
Columns are matched by position. Outputs are FP64, LightGBM's precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb

from modelyard.errors import InvalidInputError
from modelyard.runtime import SavedModel
from modelyard.runtimes._booster_runtime import BoosterRuntime, require_fitted
from modelyard.runtimes._boosting import CLASSIFIER, REGRESSOR, Task, native
from modelyard.runtimes._common import as_path, copy_file, sample_array
from modelyard.runtimes._registry import register
from modelyard.types import Array, Datatype

MODEL_FILE = "model.txt"
_BINARY = frozenset({"binary"})
_MULTICLASS = frozenset({"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"})


def _is_text_model(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(64)
    return head.startswith((b"tree\n", b"tree\r\n"))


def task_of(booster: lgb.Booster, obj: object) -> Task:
    """Classifier or regressor: the sklearn wrapper's classes when there is one, else the
    booster's objective (classes are then 0..k-1)."""
    objective = str(booster.params.get("objective", "")).split()[0] if booster.params else ""
    classes = getattr(obj, "classes_", None)
    if objective in _BINARY or objective in _MULTICLASS:
        if classes is None:
            classes = range(max(booster.num_model_per_iteration(), 2))
        return Task(task=CLASSIFIER, classes=native(classes))
    return Task(task=REGRESSOR)


@register
class LightGBMRuntime(BoosterRuntime[lgb.Booster]):
    """LightGBM Boosters and sklearn-API models (kind ``lightgbm``)."""

    kind: ClassVar[str] = "lightgbm"
    engine: ClassVar[str] = "LightGBM"
    engine_error: ClassVar[type[Exception]] = lgb.basic.LightGBMError

    @classmethod
    def can_save(cls, obj: object) -> bool:
        path = as_path(obj)
        if path is not None:
            return path.suffix.lower() == ".txt" and _is_text_model(path)
        return isinstance(obj, lgb.LGBMModel | lgb.Booster)

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Save the booster as LightGBM text (best iteration only), or copy a ``.txt`` model."""
        directory.mkdir(parents=True, exist_ok=True)
        path = as_path(obj)
        if path is not None:
            cls.read_booster(path)  # a clear error naming the caller's file, before copying it
            copy_file(path, directory, MODEL_FILE)
        elif isinstance(obj, lgb.LGBMModel):
            require_fitted(obj)
            obj.booster_.save_model(str(directory / MODEL_FILE))
        elif isinstance(obj, lgb.Booster):
            obj.save_model(str(directory / MODEL_FILE))
        else:
            raise InvalidInputError(f"lightgbm runtime: cannot save {type(obj).__qualname__}")
        booster = cls.read_booster(directory / MODEL_FILE)
        task = task_of(booster, obj)
        signature = task.signature(booster.num_feature(), sample_array(sample), Datatype.FP64)
        return SavedModel(
            signature=signature,
            runtime_options={"file": MODEL_FILE, **task.to_options()},
            metadata={
                "objective": str(booster.params.get("objective", "")),
                "lightgbm_version": lgb.__version__,
            },
        )

    def load(self) -> None:
        self._booster = self._load_measured(self.path / MODEL_FILE)

    @classmethod
    def _read_file(cls, file: str) -> lgb.Booster:
        return lgb.Booster(model_file=file)

    def _raw_predict(self, booster: lgb.Booster, data: Array) -> Any:
        return booster.predict(data, num_threads=self.options.intra_op_threads)
