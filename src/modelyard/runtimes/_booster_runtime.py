"""The runtime skeleton XGBoost and LightGBM share: a model file read into one booster with a clear
error, a :class:`~modelyard.runtimes._boosting.Task` read from the manifest, and predictions made
on one tabular input. Each engine keeps its own calls (how it reads a file, how it predicts)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from modelyard.errors import FailedPreconditionError, InvalidInputError, ModelYardError
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.runtimes._boosting import REGRESSOR, Task
from modelyard.runtimes._common import engine_errors, first_line, input_array, measure_load
from modelyard.types import Array

B = TypeVar("B")


def require_fitted(obj: Any) -> None:
    """Refuse an sklearn-API wrapper that was never fitted, before asking it for its booster."""
    if not obj.__sklearn_is_fitted__():
        raise InvalidInputError(f"{type(obj).__name__} is not fitted; call fit() first")


class BoosterRuntime(Runtime, Generic[B]):
    """One loaded booster of type ``B``. Subclasses name their ``engine`` and the exception it
    raises for a bad file, read a file in :meth:`_read_file` and predict in :meth:`_raw_predict`."""

    accepts_raw_bytes: ClassVar[bool] = False
    engine: ClassVar[str] = ""  # the engine's name in error messages
    engine_error: ClassVar[type[Exception]] = Exception  # what _read_file raises for a bad file

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._booster: B | None = None
        self._task = Task(task=REGRESSOR)
        self._bytes = 1

    @classmethod
    @abstractmethod
    def _read_file(cls, file: str) -> B:
        """The engine's booster read from a model file."""

    @classmethod
    def read_booster(cls, file: Path, error: type[ModelYardError] = InvalidInputError) -> B:
        """Read a model file; ``error`` is raised for a missing or unreadable one (bad input at
        push, a broken artifact at load)."""
        if not file.is_file():
            raise error(f"{cls.kind} runtime: model file {file.name} is missing")
        try:
            return cls._read_file(str(file))
        except cls.engine_error as exc:
            raise error(
                f"{file.name}: not a readable {cls.engine} model ({first_line(exc)})"
            ) from exc

    def _load_measured(self, file: Path) -> B:
        """The manifest's task, checked against the signature, then the booster in ``file``, its
        memory cost measured."""
        self._task = Task.from_options(self.manifest.runtime_options, self.kind)
        self._task.check_outputs(self.manifest.signature.outputs, self.kind)
        booster, self._bytes = measure_load(
            lambda: self.read_booster(file, FailedPreconditionError), self.manifest.total_bytes()
        )
        return booster

    @abstractmethod
    def _raw_predict(self, booster: B, data: Array) -> Any:
        """The engine's raw predictions for one 2-D input array."""

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        booster = self._booster
        if booster is None:
            raise FailedPreconditionError(f"{self.kind} runtime: predict() before load()")
        signature = self.manifest.signature
        data = input_array(inputs, signature.inputs[0].name if signature.inputs else "input")
        with engine_errors(self.kind):
            raw = self._raw_predict(booster, data)
            return self._task.outputs(raw, signature.outputs)

    def memory_bytes(self) -> int:
        """Approximate: RSS growth while the booster was loaded, at least the file size."""
        return self._bytes

    def unload(self) -> None:
        self._booster = None
