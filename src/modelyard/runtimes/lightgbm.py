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

from modelyard.errors import FailedPreconditionError, InvalidInputError, ModelYardError
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel
from modelyard.runtimes._boosting import CLASSIFIER, REGRESSOR, Task, native
from modelyard.runtimes._common import (
    as_path,
    copy_file,
    engine_errors,
    first_line,
    input_array,
    measure_load,
    sample_array,
)
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


def _load_booster(file: Path, error: type[ModelYardError] = InvalidInputError) -> lgb.Booster:
    """Read a model file; ``error`` is raised for an unreadable one (bad input at push, a broken
    artifact at load)."""
    if not file.is_file():
        raise error(f"lightgbm runtime: model file {file.name} is missing")
    try:
        return lgb.Booster(model_file=str(file))
    except lgb.basic.LightGBMError as exc:
        raise error(f"{file.name}: not a readable LightGBM model ({first_line(exc)})") from exc


@register
class LightGBMRuntime(Runtime):
    """LightGBM Boosters and sklearn-API models (kind ``lightgbm``)."""

    kind: ClassVar[str] = "lightgbm"
    accepts_raw_bytes: ClassVar[bool] = False

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._booster: lgb.Booster | None = None
        self._task = Task(task=REGRESSOR)
        self._bytes = 1

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
            _load_booster(path)  # a clear error naming the caller's file, before copying it
            copy_file(path, directory, MODEL_FILE)
        elif isinstance(obj, lgb.LGBMModel):
            if not obj.__sklearn_is_fitted__():
                raise InvalidInputError(f"{type(obj).__name__} is not fitted; call fit() first")
            obj.booster_.save_model(str(directory / MODEL_FILE))
        elif isinstance(obj, lgb.Booster):
            obj.save_model(str(directory / MODEL_FILE))
        else:
            raise InvalidInputError(f"lightgbm runtime: cannot save {type(obj).__qualname__}")
        booster = _load_booster(directory / MODEL_FILE)
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
        self._task = Task.from_options(self.manifest.runtime_options, self.kind)
        self._task.check_outputs(self.manifest.signature.outputs, self.kind)
        self._booster, self._bytes = measure_load(
            lambda: _load_booster(self.path / MODEL_FILE, FailedPreconditionError),
            self.manifest.total_bytes(),
        )

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        booster = self._booster
        if booster is None:
            raise FailedPreconditionError("lightgbm runtime: predict() before load()")
        signature = self.manifest.signature
        data = input_array(inputs, signature.inputs[0].name if signature.inputs else "input")
        with engine_errors(self.kind):
            raw: Any = booster.predict(data, num_threads=self.options.intra_op_threads)
            return self._task.outputs(raw, signature.outputs)

    def memory_bytes(self) -> int:
        """Approximate: RSS growth while the booster was loaded, at least the file size."""
        return self._bytes

    def unload(self) -> None:
        self._booster = None
